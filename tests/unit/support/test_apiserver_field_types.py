"""Field types in the API server stand-in: a container's env value that is not a string
(`helm --set x.extraEnv[0].value=100` renders an integer) is refused on every write path
with the status and message the real server's typed decoding gives (see
`check_field_types` in tests/support/apiserver.py for the upstream sources), and nothing
is stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.apiserver import ApiServer, go_format
from tests.unit.support.test_apiserver import NS, STS, call, statefulset

PODS = f"/api/v1/namespaces/{NS}/pods"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
DECODE = ("json: cannot unmarshal number into Go struct field "
          "EnvVar.spec.template.spec.containers.env.value of type string")
STS_DECODE = f'StatefulSet in version "v1" cannot be handled as a StatefulSet: {DECODE}'


def with_env(value: Any, name: Any = "X") -> dict[str, Any]:
    sts = statefulset()
    sts["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": name, "value": value}]
    return sts


def env_patch(value: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "env": [{"name": "X", "value": value}]}]}}}}


def stored(server: ApiServer) -> dict[str, Any] | None:
    return copy.deepcopy(server.store.get("StatefulSet", NS, "web"))


def test_create_refuses_a_number_as_the_json_decoder_does(server: ApiServer) -> None:
    """handlers/create.go: the decode error through rest.go `transformDecodeError`, 400."""
    code, status = call(server, "POST", STS, with_env(100))
    assert (code, status["reason"], status["message"]) == (400, "BadRequest", STS_DECODE)
    assert "details" not in status
    assert stored(server) is None and server.store.version == 0
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    pod["spec"] = {"initContainers": [{"name": "i", "env": [{"name": True}]}],
                   "containers": [{"name": "c", "env": [{"name": "X", "value": 1.5}]}]}
    code, status = call(server, "POST", PODS, pod)
    assert (code, status["message"]) == (400, 'Pod in version "v1" cannot be handled as a '
                                              "Pod: json: cannot unmarshal bool into Go "
                                              "struct field EnvVar.spec.initContainers.env."
                                              "name of type string")
    pod["spec"]["initContainers"] = []
    code, status = call(server, "POST", PODS, pod)
    assert (code, status["message"]) == (400, 'Pod in version "v1" cannot be handled as a '
                                              "Pod: json: cannot unmarshal number into Go "
                                              "struct field EnvVar.spec.containers.env.value "
                                              "of type string")
    assert server.store.get("Pod", NS, "p") is None
    code, got = call(server, "POST", STS, with_env("100"))
    assert code == 201
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "X", "value": "100"}]
    assert call(server, "POST", STS, {**with_env(None), "metadata": {"name": "nulls"}})[
        0] == 201  # null decodes to ""


def test_update_refuses_a_number_and_keeps_the_stored_object(server: ApiServer) -> None:
    """handlers/update.go decodes the body as create does: the same 400."""
    assert call(server, "POST", STS, with_env("1"))[0] == 201
    before = stored(server)
    assert before is not None
    put = with_env(100)
    put["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
    code, status = call(server, "PUT", f"{STS}/web", put)
    assert (code, status["reason"], status["message"]) == (400, "BadRequest", STS_DECODE)
    assert stored(server) == before
    code, status = call(server, "PUT", f"{STS}/missing", put)
    assert code == 400, "the body is decoded before the object is looked up"
    put["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "100"
    code, got = call(server, "PUT", f"{STS}/web", put)
    assert code == 200
    assert got["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "100"


@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH])
def test_json_and_merge_patches_are_invalid_with_the_patched_document(
        server: ApiServer, content_type: str) -> None:
    """patch.go `jsonPatcher.applyPatchToCurrentObject`: the patched document fails to
    decode: `NewInvalid(GroupKind{}, "", field.Invalid("patch", patchedJS, err))`, 422."""
    assert call(server, "POST", STS, statefulset())[0] == 201
    before = stored(server)

    def body(value: Any) -> Any:
        if content_type == MERGE:  # a merge patch replaces the list
            return {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "i", "env": [{"name": "X", "value": value}]}]}}}}
        return [{"op": "add", "path": "/spec/template/spec/containers/0/env",
                 "value": [{"name": "X", "value": value}]}]

    code, status = call(server, "PATCH", f"{STS}/web", body(100), content_type)
    assert (code, status["reason"]) == (422, "Invalid")
    head, tail = ' "" is invalid: patch: Invalid value: ', f": {DECODE}"
    message = status["message"]
    assert message.startswith(head) and message.endswith(tail)
    patched = json.loads(json.loads(message[len(head):-len(tail)]))
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "X", "value": 100}]
    assert status["details"] == {"causes": [{"reason": "FieldValueInvalid", "field": "patch",
                                             "message": message[len(' "" is invalid: '
                                                                    "patch: "):]}]}
    assert stored(server) == before
    code, got = call(server, "PATCH", f"{STS}/web", body("100"), content_type)
    assert code == 200
    assert got["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "100"


def test_a_strategic_merge_patch_is_invalid_with_the_converter_error(
        server: ApiServer) -> None:
    """patch.go `applyPatchToObject`: runtime/converter.go cannot convert the merged map,
    422 with the patch printed as Go's `%+v` of the map."""
    assert call(server, "POST", STS, with_env("1"))[0] == 201
    before = stored(server)
    code, status = call(server, "PATCH", f"{STS}/web", env_patch(100), SMP)
    assert (code, status["reason"], status["message"]) == (
        422, "Invalid", ' "" is invalid: patch: Invalid value: "map[spec:map[template:map['
                        "spec:map[containers:[map[env:[map[name:X value:100]] name:c]]]]]]"
                        '": cannot convert int64 to string')
    assert status["details"]["causes"][0]["field"] == "patch"
    code, status = call(server, "PATCH", f"{STS}/web", env_patch(True), SMP)
    assert code == 422 and status["message"].endswith(
        '[map[name:X value:true]] name:c]]]]]]": unrecognized type: string')
    assert stored(server) == before
    code, got = call(server, "PATCH", f"{STS}/web", env_patch("100"), SMP)
    assert code == 200
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "X", "value": "100"}]


def test_server_side_apply_fails_to_make_the_typed_patch_object(server: ApiServer) -> None:
    """managedfields/internal/structuredmerge.go `Apply`: a plain error, so a 500 without a
    reason (kubernetes/kubernetes#122480), on create and on update."""
    typed = ('failed to create typed patch object (chat/web; apps/v1, Kind=StatefulSet): '
             '.spec.template.spec.containers[name="c"].env[name="X"].value: expected string, '
             "got &value.valueUnstructured{Value:100}")
    url = f"{STS}/web?fieldManager=helm&force=true"
    code, status = call(server, "PATCH", url, with_env(100), APPLY)
    assert (code, status["message"]) == (500, typed)
    assert "reason" not in status and "details" not in status
    assert stored(server) is None and server.store.version == 0
    assert call(server, "PATCH", url, with_env("1"), APPLY)[0] == 201
    before = stored(server)
    code, status = call(server, "PATCH", url, with_env(100), APPLY)
    assert (code, status["message"]) == (500, typed)
    two = with_env(100)
    two["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "Y", "value": 2.5})
    code, status = call(server, "PATCH", url, two, APPLY)
    assert (code, status["message"].split("\n")) == (500, [
        "failed to create typed patch object (chat/web; apps/v1, Kind=StatefulSet): errors:",
        '  .spec.template.spec.containers[name="c"].env[name="X"].value: expected string, '
        "got &value.valueUnstructured{Value:100}",
        '  .spec.template.spec.containers[name="c"].env[name="Y"].value: expected string, '
        "got &value.valueUnstructured{Value:2.5}"])
    assert stored(server) == before
    code, got = call(server, "PATCH", url, with_env("100"), APPLY)
    assert code == 200
    assert got["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "100"


def test_go_format_prints_decoded_json_as_go_does() -> None:
    """`%v` and `%#v` of map[string]interface{} and friends, floats as strconv 'g'."""
    assert go_format({"b": [1, 1e6, 0.5], "a": None, "c": "s"}) == \
        "map[a:<nil> b:[1 1e+06 0.5] c:s]"
    assert go_format({"k": ["v", 100.0, False]}, sharp=True) == \
        'map[string]interface {}{"k":[]interface {}{"v", 100, false}}'
