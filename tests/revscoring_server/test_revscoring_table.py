"""The model-type table and the shipped inference-service table against the seed table and the libraries."""

from __future__ import annotations

import importlib

import pytest

from dev.demo_models.feature_lists import feature_list_for
from dev.seed_table import revscoring_rows, seed_table_path
from revscoring_server.model import _datasource_names, fetch_plan
from revscoring_server.model_types import MODEL_TYPES, Need, Output
from revscoring_server.scoring import ModelLoadError
from revscoring_server.services import UnknownService, find_service, load_services, parse_isvc, render

ROWS = revscoring_rows()


def test_the_shipped_table_is_the_seed_table():
    assert len(ROWS) == 110
    shipped = {(s.isvc, s.model_type, s.dbname, s.domain, s.namespace) for s in load_services().values()}
    assert shipped == {(r.isvc, r.model_type, r.dbname, r.domain, r.namespace) for r in ROWS}
    assert len(load_services()) == 110


def test_the_data_file_is_exactly_what_the_generator_writes():
    from importlib import resources

    shipped = (
        resources.files("revscoring_server").joinpath("inference_services.tsv").read_text(encoding="utf-8")
    )
    assert shipped == render(seed_table_path()), "regenerate: python -m revscoring_server.services SEED_TSV"


def test_every_model_type_of_the_seed_table_is_in_the_table_and_nothing_else():
    assert {row.model_type for row in ROWS} == set(MODEL_TYPES)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_feature_list_agrees_with_the_demo_model_builder(row):
    assert MODEL_TYPES[row.model_type].feature_list(row.dbname) == feature_list_for(row)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_table_needs_are_exactly_what_the_production_feature_list_depends_on(row):
    """Fetching less would make revscoring call the API mid-extraction; fetching more wastes calls."""
    module, attribute = MODEL_TYPES[row.model_type].feature_list(row.dbname)
    features = getattr(importlib.import_module(module), attribute)
    names = _datasource_names(features)
    assert {need for need in Need if need.value in names} == MODEL_TYPES[row.model_type].needs
    assert "datasource.revision.text" in names  # every model reads the revision's content


def test_output_shapes_and_content_models():
    assert MODEL_TYPES["damaging"].output is Output.BINARY
    assert MODEL_TYPES["articlequality"].output is Output.MULTICLASS
    assert MODEL_TYPES["drafttopic"].output is Output.MULTILABEL
    assert MODEL_TYPES["itemquality"].accepted_content_models("wikidatawiki") == ("wikibase-item",)
    assert MODEL_TYPES["articlequality"].accepted_content_models("enwiki") == ("wikitext",)
    assert "wikibase-item" in MODEL_TYPES["goodfaith"].accepted_content_models("wikidatawiki")


@pytest.mark.parametrize(
    "isvc, expected",
    [
        ("enwiki-damaging", ("enwiki", "damaging")),
        ("wikidatawiki-goodfaith", ("wikidatawiki", "goodfaith")),
        ("frwikisource-articlequality", ("frwikisource", "articlequality")),
        ("translatewiki-reverted", ("translatewiki", "reverted")),
    ],
)
def test_parse_isvc(isvc, expected):
    assert parse_isvc(isvc) == expected
    assert find_service(isvc).domain.endswith((".org", ".net"))


@pytest.mark.parametrize(
    "isvc, fragment",
    [
        ("enwiki", "expected '<dbname>-<model type>'"),
        ("enwiki-outlink", "expected '<dbname>-<model type>'"),
        ("-damaging", "expected '<dbname>-<model type>'"),
        ("dewiki-reverted", "there is no reverted model for 'dewiki'"),
        ("xxwiki-damaging", "there is no damaging model for 'xxwiki'"),
    ],
)
def test_unknown_names_say_what_is_wrong(isvc, fragment):
    with pytest.raises(UnknownService, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        find_service(isvc)


def test_domains_come_from_the_table():
    assert find_service("wikidatawiki-damaging").domain == "www.wikidata.org"
    assert find_service("frwikisource-articlequality").domain == "fr.wikisource.org"
    assert find_service("translatewiki-reverted").domain == "translatewiki.net"


def test_fetch_plan_refuses_a_model_needing_more_than_its_type_fetches(tiny_models):
    from revscoring_server.scoring import load_model

    edit_features = load_model(tiny_models["binary"]).features  # needs the parent and the user
    with pytest.raises(ModelLoadError, match="PARENT_REVISION"):
        fetch_plan(edit_features, MODEL_TYPES["articlequality"], "enwiki", "x/model.bin")
    plan = fetch_plan(edit_features, MODEL_TYPES["damaging"], "enwiki", "x/model.bin")
    assert plan.needs == {Need.PARENT_REVISION, Need.USER_INFO}
