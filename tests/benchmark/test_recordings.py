from benchmark.recordings import Recording, Response, request_key


def test_key_ignores_parameter_order_and_pipe_order():
    a = request_key("en.wikipedia.org", "/w/api.php", "action=query&prop=revisions|info&revids=5&format=json")
    b = request_key(
        "EN.wikipedia.org", "/w/api.php", "format=json&revids=5&action=query&prop=info%7Crevisions"
    )
    assert a == b


def test_key_separates_hosts_values_and_paths():
    base = request_key("en.wikipedia.org", "/w/api.php", "action=query&revids=5")
    assert base != request_key("de.wikipedia.org", "/w/api.php", "action=query&revids=5")
    assert base != request_key("en.wikipedia.org", "/w/api.php", "action=query&revids=6")
    assert base != request_key("en.wikipedia.org", "/w/index.php", "action=query&revids=5")


def test_form_body_counts_like_query_string():
    assert request_key("h", "/w/api.php", "action=query", "revids=5") == request_key(
        "h", "/w/api.php", "action=query&revids=5"
    )


def test_recording_round_trips_through_disk(tmp_path):
    recording = Recording()
    body = '{"query": {"pages": [{"title": "Zürich"}]}}'.encode()
    recording.add("k1", Response(200, body))
    path = tmp_path / "sub" / "rec.json.gz"
    recording.save(path)
    loaded = Recording.load(path)
    assert len(loaded) == 1
    assert loaded.get("k1") == Response(200, body)
    assert loaded.get("k2") is None
