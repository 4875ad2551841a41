"""The served OpenAPI document stays true to the routes."""

import re

from containerd_py.api import ROUTES


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_is_documented_and_nothing_else(api):
    doc = api.request("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), _normalise(p)) for p, ops in doc["paths"].items()
                  for m in ops if m != "parameters"}
    served = {(r.method, _normalise(r.path)) for r in ROUTES}
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes that do not exist"


def test_every_operation_documents_its_errors(api):
    doc = api.request("GET", "/openapi.json")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            codes = set(op["responses"])
            assert any(c.startswith("2") or c == "101" for c in codes), (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)
            for code in codes:
                if code.startswith(("4", "5")):
                    schema = op["responses"][code]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_docs_api_md_lists_every_route():
    import os
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "api.md")) as f:
        text = f.read()
    for r in ROUTES:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", r.path)  # {ref:.+} is {ref}
        assert f"`{r.method} {path}`" in text, f"docs/api.md lacks {r.method} {path}"
