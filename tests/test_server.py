"""`dupfinder serve`: a real server process on a loopback port, spoken to over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
httpx = pytest.importorskip("httpx")

from server_process import KEY, Server, build_index, pairs_questions  # noqa: E402

STATIC = Path(__file__).parents[1] / "dupfinder" / "server" / "static"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("served") / "index"
    build_index(directory)
    return directory


@pytest.fixture(scope="module")
def server(index, tmp_path_factory):
    s = Server(index, tmp_path_factory.mktemp("home"))
    yield s
    s.stop()


@pytest.fixture
def http(server):
    with server.client() as c:
        yield c


@pytest.fixture
def writer(server):
    with server.client(KEY) as c:
        yield c


N = len(pairs_questions())


def rounded(answer):
    """Scores to 5 decimals: a batch sums its products in another order than one question alone."""
    if isinstance(answer, float):
        return round(answer, 5)
    if isinstance(answer, dict):
        return {k: rounded(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [rounded(v) for v in answer]
    return answer


# ---------------------------------------------------------------- reads


def test_health_and_info(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    from dupfinder.engine import Engine, load_encoder
    from dupfinder.model.files import DEFAULT_MODEL_DIR

    shipped = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    info = http.get("/v1/info").json()
    assert info["count"] == N
    assert info["model_fingerprint"] == shipped["fingerprint"]
    assert (info["kind"], info["dimension"], info["writes_need_key"]) == ("flat", 256, True)
    assert info["threshold"] == pytest.approx(Engine(load_encoder()).threshold, abs=1e-6)  # the threshold in force, as the CLI's


def test_search_one_and_many(http):
    hits = http.post("/v1/search", json={"question": "How old are you?", "k": 3}).json()["hits"]
    assert len(hits) == 3
    assert {k: hits[0][k] for k in ("id", "text", "score", "duplicate")} == {"id": "q1", "text": "How old are you?", "score": pytest.approx(1.0, abs=1e-5), "duplicate": True}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    texts = ["What is your age?", "How do I learn Python quickly?", "What is your age?"]
    results = http.post("/v1/search", json={"questions": texts, "k": 2}).json()["results"]
    assert len(results) == 3
    for text, result in zip(texts, results):  # a batch answers as each question alone does
        assert rounded(result) == rounded(http.post("/v1/search", json={"question": text, "k": 2}).json())
    assert http.post("/v1/search", json={"question": "How old are you?", "k": 100}).json()["hits"][-1]["id"]  # k past the count


def test_concurrent_searches_get_their_own_answers(http):
    """Searches that arrive together are answered in one engine call: each must still get its own hits."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [t for _, t in pairs_questions()][:24]
    bodies = [{"question": t, "k": 1 + i % 4} for i, t in enumerate(texts)] + [{"questions": texts[:3], "k": 2}]
    alone = [rounded(http.post("/v1/search", json=b).json()) for b in bodies]

    with ThreadPoolExecutor(8) as pool:  # an httpx client is thread-safe: one pool of connections
        for _ in range(2):
            assert list(pool.map(lambda b: rounded(http.post("/v1/search", json=b).json()), bodies)) == alone


def test_similarity_agrees_with_search(http):
    pair = http.post("/v1/similarity", json={"question1": "How old are you?", "question2": "What is your age?"}).json()
    hits = http.post("/v1/search", json={"question": "How old are you?", "k": 10}).json()["hits"]
    age = next(h for h in hits if h["id"] == "q2")
    assert pair["score"] == pytest.approx(age.get("verdict_score", age["score"]), abs=1e-5)  # the verdict's score
    assert pair.get("cosine", pair["score"]) == pytest.approx(age["score"], abs=1e-5)  # a hit's score is its cosine
    assert pair["duplicate"] == (pair["score"] >= pair["threshold"]) == age["duplicate"]


def test_screen(http):
    # the first two differ in case and punctuation only: duplicates by any verdict
    rows = http.post("/v1/screen", json={"questions": ["How old are you?", "how old are you", "Where is Paris in winter?"]}).json()["results"]
    assert [r["in_batch"] for r in rows] == [[1], [0], []]
    assert rows[0]["in_index"][0]["id"] == "q1" and all(h["duplicate"] for h in rows[0]["in_index"])


def test_get_question(http):
    assert http.get("/v1/questions/q1").json()["text"] == "How old are you?"
    r = http.get("/v1/questions/nope")
    assert (r.status_code, r.json()) == (404, {"detail": "no question with id 'nope' in the index"})


# ---------------------------------------------------------------- writes


def test_writes_need_the_key(http, server):
    for method, path, body in [("POST", "/v1/questions", {"questions": [{"id": "x", "text": "Is this stored?"}]}),
                               ("DELETE", "/v1/questions/q1", None)]:
        r = http.request(method, path, json=body)
        assert r.status_code == 401 and "Authorization: Bearer KEY" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
        with server.client("not-the-key") as wrong:
            r = wrong.request(method, path, json=body)
        assert (r.status_code, r.json()["detail"]) == (401, "wrong API key: send the key the server was started with")
    # checked before the body: a caller without the key learns nothing about the request
    assert http.post("/v1/questions", json={"nonsense": 1}).status_code == 401
    assert http.get("/v1/questions/q1").status_code == 200


def test_add_then_search_get_replace_remove(writer, http):
    body = {"questions": [{"id": "new-1", "text": "Can penguins fly over the sea?"},
                          {"id": "new-1", "text": "Can penguins fly over the sea?"},
                          {"text": "How old are you?"},
                          {"id": "new-2", "text": "can PENGUINS fly over the sea?"}]}
    r = writer.post("/v1/questions", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["added"], result["replaced"], result["skipped"], result["count"]) == (1, 0, 3, N + 1)
    assert [(q["id"], q["status"], q["reason"]) for q in result["questions"]] == [
        ("new-1", "added", None),
        ("new-1", "skipped", "the same id and text came earlier in this request"),
        (None, "skipped", "the same text is indexed already (under another id)"),
        ("new-2", "skipped", "the same text came earlier in this request"),
    ]
    # acknowledged means searchable
    assert http.post("/v1/search", json={"question": "Can penguins fly over the sea?", "k": 1}).json()["hits"][0]["id"] == "new-1"
    assert http.get("/v1/questions/new-1").json()["source"] == "http"
    again = writer.post("/v1/questions", json={"questions": [{"id": "new-1", "text": "Can penguins fly over the sea?"}]}).json()
    assert again["questions"] == [{"id": "new-1", "status": "skipped", "reason": "already indexed with this id and text"}]

    other = {"questions": [{"id": "new-1", "text": "Can ostriches fly?"}]}
    r = writer.post("/v1/questions", json=other)
    assert r.status_code == 409
    assert r.json()["detail"] == ('already in the index with other text: id new-1; send "upsert": true to replace their text, '
                                  'or use new ids; nothing was added')
    r = writer.post("/v1/questions", json=other | {"upsert": True})
    assert r.json()["questions"] == [{"id": "new-1", "status": "replaced", "reason": None}] and r.json()["count"] == N + 1
    assert http.get("/v1/questions/new-1").json()["text"] == "Can ostriches fly?"

    r = writer.delete("/v1/questions/new-1")
    assert r.json() == {"removed": ["new-1"], "count": N}
    r = writer.delete("/v1/questions/new-1")
    assert (r.status_code, r.json()["detail"]) == (404, "no question with id 'new-1' in the index; nothing was removed")
    assert http.get("/v1/questions/new-1").status_code == 404
    hits = http.post("/v1/search", json={"question": "Can ostriches fly?", "k": N}).json()["hits"]
    assert "new-1" not in {h["id"] for h in hits}


def test_same_id_twice_with_other_text_in_one_request(writer):
    r = writer.post("/v1/questions", json={"questions": [{"id": "d", "text": "One?"}, {"id": "d", "text": "Two?"}]})
    assert (r.status_code, r.json()["detail"]) == (422, "questions[1].id 'd' came earlier in this request with other text: send each id once")
    assert writer.get("/v1/questions/d").status_code == 404


# ---------------------------------------------------------------- user mistakes: 4xx that say what to fix


def _long(n: int) -> str:
    return "why " * (n // 4) + "x" * (n % 4)


@pytest.mark.parametrize("body, status, message", [
    ({"question": "x", "k": 0}, 422, "k: input should be greater than or equal to 1"),
    ({"question": "x", "k": 101}, 422, "k: input should be less than or equal to 100 (this server's limit)"),
    ({"question": "x", "k": "five"}, 422, "k: input should be a valid integer"),
    ({"question": "x", "k": True}, 422, "k: input should be a valid integer"),
    ({"question": "   "}, 422, "question is empty or only spaces: send some text"),
    ({"question": "a", "questions": ["b"]}, 422, 'send either "question" (one text) or "questions" (a list of texts)'),
    ({"k": 5}, 422, 'send either "question" (one text) or "questions" (a list of texts)'),
    ({"qestion": "a"}, 422, "qestion is not a field of this request (the fields are: question, questions, k)"),
    ({"question": _long(1001)}, 422, "question: string should have at most 1000 characters (this server's limit)"),
    ({"questions": ["ok", _long(1001)]}, 422, "questions[1] has 1,001 characters; the limit is 1,000"),
    ({"questions": ["a?"] * 257}, 422, "questions: list should have at most 256 items after validation, not 257 (this server's limit)"),
    ({"questions": []}, 422, "questions: list should have at least 1 item"),
    ({"questions": ["fine", ""]}, 422, "questions[1] is empty or only spaces"),
    ({"question": "nul \x00 inside"}, 422, "question holds a NUL character"),
    ([1, 2], 422, "body: input should be a valid dictionary"),
])
def test_search_mistakes(http, body, status, message):
    r = http.post("/v1/search", json=body)
    assert r.status_code == status
    detail = r.json()["detail"]
    assert detail.startswith(message), detail
    assert detail.endswith('for example: {"question": "How can I lose weight fast?", "k": 5}')


@pytest.mark.parametrize("content, headers, status, message", [
    (b'{"question": "x",', {"Content-Type": "application/json"}, 400, "the body is not valid JSON"),
    (b"question=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "send the body as JSON with the header Content-Type: application/json"),
    (b'{"question": "\\ud800"}', {"Content-Type": "application/json"}, 422, "question: input should be a valid string"),
    (b"{" + b" " * 1_000_001 + b"}", {"Content-Type": "application/json"}, 413, "the body has 1,000,003 bytes; this server's limit is 1,000,000"),
])
def test_body_mistakes(http, content, headers, status, message):
    r = http.post("/v1/search", content=content, headers=headers)
    assert r.status_code == status and r.json()["detail"].startswith(message), r.text


def test_body_over_the_limit_without_a_length(http):
    def chunks():
        for _ in range(20):
            yield b" " * 100_000

    r = http.post("/v1/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"].startswith("the body is larger than this server's limit of 1,000,000 bytes")


def test_other_mistakes(http, writer):
    r = http.get("/v1/nothing")
    assert (r.status_code, r.json()["detail"]) == (404, "no route GET /v1/nothing; the routes are listed at /docs")
    r = http.post("/v1/info")
    assert (r.status_code, r.json()["detail"]) == (405, "POST is not allowed on /v1/info; see /docs for its methods")
    r = http.post("/v1/similarity", json={"question1": "How old are you?"})
    assert (r.status_code, r.json()["detail"].split(";")[0]) == (422, "question2 is missing")
    r = writer.post("/v1/questions", json={"questions": [{"id": " padded ", "text": "A question?"}]})
    assert r.status_code == 422 and "id has leading or trailing spaces" in r.json()["detail"]
    r = writer.post("/v1/questions", json={"questions": [{"id": "x", "text": "A question?", "tags": []}]})
    assert r.status_code == 422 and "questions[0].tags is not a field of this request" in r.json()["detail"]
    r = http.get("/v1/questions/" + "x" * 201)
    assert r.status_code == 422 and r.json()["detail"].startswith("id: string should have at most 200 characters")


# ---------------------------------------------------------------- metrics, docs, page


def test_metrics(http):
    http.post("/v1/search", json={"question": "How old are you?"})
    http.get("/v1/questions/nope")
    text = http.get("/metrics").text
    assert 'dupfinder_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'dupfinder_http_requests_total{method="GET",route="/v1/questions/{id}",status="404"}' in text
    assert 'dupfinder_http_request_duration_seconds_bucket{method="POST",route="/v1/search",le="+Inf"}' in text
    assert f"dupfinder_index_questions {N}" in text.splitlines()


def test_openapi_docs_and_page_are_offline(http):
    spec = http.get("/openapi.json").json()
    assert {"/healthz", "/v1/info", "/v1/search", "/v1/similarity", "/v1/questions", "/v1/questions/{id}", "/v1/screen",
            "/metrics"} <= set(spec["paths"])
    search = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert search["k"]["maximum"] == 100 and search["questions"]["anyOf"][0]["maxItems"] == 256
    for path in ("/", "/docs"):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for name in ("index.html", "app.js", "style.css", "docs.html", "docs.js", "docs.css"):
        assert http.get(f"/static/{name}").status_code == 200
        text = (STATIC / name).read_text()
        assert "https://" not in text and "http://" not in text, name  # nothing from the network: it works offline


# ---------------------------------------------------------------- the command


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if k != "DUPFINDER_API_KEY"} | (env or {})
    return subprocess.run([sys.executable, "-m", "dupfinder", "serve", *args], capture_output=True, text=True, env=full, timeout=60)


def test_refuses_a_public_address_without_a_key(tmp_path):
    r = _serve("--host", "0.0.0.0", "--index", str(tmp_path / "none"))
    assert r.returncode == 1
    assert r.stderr == ("Error: refusing to listen on 0.0.0.0 without an API key (anyone who reaches it could add and delete "
                        "questions): set DUPFINDER_API_KEY or pass --api-key-file, or listen on 127.0.0.1\n")
    empty = tmp_path / "key"
    empty.write_text("\n")
    r = _serve("--api-key-file", str(empty))
    assert (r.returncode, r.stderr) == (1, f"Error: the API key file {empty} is empty: put the key on its first line\n")
    r = _serve("--api-key-file", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.startswith(f"Error: cannot read the API key file {tmp_path / 'missing'}")


def test_without_the_serve_extra():
    code = "import sys; sys.modules['fastapi'] = None; from dupfinder.cli import cli; cli(['serve'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, "Error: dupfinder serve needs fastapi: pip install 'dupfinder[serve]'\n")


def test_no_index(tmp_path):
    r = _serve("--index", str(tmp_path / "none"))
    assert r.returncode == 1
    assert r.stderr == f"Error: no index at {tmp_path / 'none'}; build one with: dupfinder index FILE --index {tmp_path / 'none'}\n"


# ---------------------------------------------------------------- no key; kill -9; the CLI beside the server


@pytest.mark.slow  # two server processes, a CLI process and a kill: about 5 s of CPU
def test_open_writes_survive_kill_9_and_cli_writes_reach_the_server(tmp_path):
    """Without a key writes are open (loopback only). An acknowledged add survives kill -9; questions
    the CLI indexes while the server runs show up in its searches."""
    index = tmp_path / "index"
    build_index(index)
    server = Server(index, tmp_path / "home", key=None)
    try:
        with server.client() as c:
            assert c.get("/v1/info").json()["writes_need_key"] is False
            r = c.post("/v1/questions", json={"questions": [{"id": "durable", "text": "Does this survive a crash?"}]})
            assert r.status_code == 200
            (tmp_path / "more.csv").write_text("id,question\ncli-1,Which planet has the most moons?\n")
            cli = subprocess.run([sys.executable, "-m", "dupfinder", "index", str(tmp_path / "more.csv"), "--index", str(index)],
                                 capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stderr
            hit = c.post("/v1/search", json={"question": "Which planet has the most moons?", "k": 1}).json()["hits"][0]
            assert hit["id"] == "cli-1"
        server.kill()
        server = Server(index, tmp_path / "home", key=None)
        with server.client() as c:
            assert c.get("/v1/questions/durable").json()["text"] == "Does this survive a crash?"
            assert c.get("/v1/info").json()["count"] == N + 2
    finally:
        server.stop()


# ---------------------------------------------------------------- fuzz from the OpenAPI document


@pytest.mark.slow
def test_fuzz_finds_no_server_error(tmp_path):
    """schemathesis generates valid and invalid requests for every operation from /openapi.json: no 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    index = tmp_path / "index"
    build_index(index)
    server = Server(index, tmp_path / "home")
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        failures = []
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                @settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case):
                    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} {case.body!r}: {response.status_code} {response.text[:200]}")

                try:
                    check()
                except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                    assert mode is schemathesis.GenerationMode.NEGATIVE
        assert not failures, "\n".join(failures[:10])
        assert "Traceback" not in "".join(server.log)
    finally:
        server.stop()
