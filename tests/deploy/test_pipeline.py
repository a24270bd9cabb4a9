""".pipeline/config.yaml: every image is tested, built and published from variants that exist."""

import yaml
from blubber_config import REPO_ROOT, TEST_VARIANT, load_blubber, production_variants

from deploy import pipeline

PIPELINE_DIR = REPO_ROOT / ".pipeline"


def load_pipelines():
    return yaml.safe_load((PIPELINE_DIR / "config.yaml").read_text(encoding="utf-8"))["pipelines"]


def test_committed_pipeline_config_is_what_the_generator_writes():
    assert (PIPELINE_DIR / "config.yaml").read_text(encoding="utf-8") == pipeline.render_text(), (
        ".pipeline/config.yaml is out of date: run `python -m deploy.pipeline --write`")


def test_every_blubberfile_exists_and_every_stage_builds_an_existing_variant():
    for name, definition in load_pipelines().items():
        # PipelineLib resolves blubberfile relative to .pipeline/
        blubberfile = (PIPELINE_DIR / definition["blubberfile"]).resolve()
        assert blubberfile.is_file(), name
        variants = load_blubber(blubberfile)["variants"]
        for stage in definition["stages"]:
            assert stage["build"] in variants, (name, stage["name"])


def test_every_image_has_a_tested_build_and_a_tested_publish_pipeline():
    pipelines = load_pipelines()
    for image in production_variants():
        build, publish = pipelines[image]["stages"], pipelines[f"{image}-publish"]["stages"]
        for stages in (build, publish):
            assert stages[0]["build"] == TEST_VARIANT and stages[0]["run"] is True
            assert stages[-1]["build"] == image
        assert "publish" not in build[-1]
        published = publish[-1]["publish"]["image"]
        assert published["name"] == f"${{setup.project}}-{image}"
        assert "stable" in published["tags"]
    assert len(pipelines) == 2 * len(production_variants())


def test_published_names_match_the_images_the_manifests_pull():
    values = yaml.safe_load((REPO_ROOT / "deploy" / "values.yaml").read_text(encoding="utf-8"))["images"]
    assert values["tag"] == "stable"
    stages = [stage for definition in load_pipelines().values() for stage in definition["stages"]]
    published = {stage["publish"]["image"]["name"].replace("${setup.project}", values["project"])
                 for stage in stages if "publish" in stage}
    assert published == {f"{values['project']}-{image}" for image in production_variants()}
