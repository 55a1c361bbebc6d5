"""Terraform of `infra/`, parsed with python-hcl2 and rendered just enough to check it statically.

Nothing here runs Terraform (its providers cannot be downloaded on a machine without network): the
tests read the configuration as data. `Config.instances` expands `for_each` over literal local maps
and sets (and merges of them), over the GPU locals derived from the GPU table (`Config.local_value`)
and over another resource's instances, then expands the dynamic blocks over literal lists and
resolves indexes into literal local maps, so each instance reads as Terraform would create it
(`Config.instance` looks one up by address); `Config.moves` lists the `moved` blocks. `Renderer`
evaluates the handful of expression shapes the environment maps and the trainer jobs use, for test
values of the variables, so the settings classes can load what Cloud Run would pass them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"

# The locals infra/main.tf derives from the GPU table (runtune/gpus.json), exactly as written there;
# `Config.local_value` computes them in Python, so a change to either side fails the tests loudly.
GPU_LOCALS = {
    "gpu_table": 'jsondecode(file("${path.module}/../runtune/gpus.json"))',
    "gpu_names": "[for gpu in local.gpu_table.gpus : gpu.name]",
    "gpu_shapes": (
        "{for gpu in local.gpu_table.gpus : gpu.name => {cpu = tostring(gpu.cloud_run_cpu), memory = "
        '"${gpu.cloud_run_memory_gib}Gi"}}'
    ),
    "trainer_gpus": "var.trainer_gpus == null ? local.gpu_names : distinct(var.trainer_gpus)",
    # The Vertex AI machines of the same file (runtune/compute.py VERTEX_MACHINES).
    "vertex_machine_names": "[for machine in local.gpu_table.vertex.machines : machine.name]",
    "vertex_machines": "var.vertex_machines == null ? local.vertex_machine_names : distinct(var.vertex_machines)",
}

# The environment maps of infra/cloud_run.tf: what every deployable reads, merged into each one's own.
ENV_LOCAL = "{for deployable, own in local.own_env : deployable => merge(local.common_env, own)}"

_OPTIONS = SerializationOptions(explicit_blocks=False, strip_string_quotes=True, with_comments=False)
_REF = re.compile(r"^\$\{([^{}]+)\}$")
# A local read from a JSON file next to the code (`jsondecode(file("${path.module}/..."))`), or one
# attribute path of it (`jsondecode(file(...)).roles`).
_JSON_FILE = re.compile(r'^\$\{jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)((?:\.\w+)*)\}$')
# A literal set (`toset(["inference", "evaluate"])`).
_LITERAL_SET = re.compile(r'toset\(\[((?:"[^"]*"(?:, *)?)*)\]\)')
# An index into a literal local map (`[local.job_launchers.trainer]`, `[local.job_launchers["ingest"]]`).
_LOCAL_INDEX = re.compile(r'\[local\.(\w+)(?:\.(\w+)|\["([^"]+)"\])\]')
# A choice on whether a key is one of a local map's (`contains(keys(local.public_services), "gateway") ? "A" : "B"`).
_KEY_CONDITION = re.compile(r'^\$\{contains\(keys\(local\.(\w+)\), "([^"]+)"\) \? "([^"]*)" : "([^"]*)"\}$')
# A merge of literal local maps (`merge(local.public_services, local.private_services)`).
_MERGE = re.compile(r"merge\((local\.\w+(?:, local\.\w+)*)\)")
# A condition on a boolean of each.value choosing between two literal lists (`each.value.x ? [1] : []`).
_EACH_CONDITION = re.compile(r"each\.value\.(\w+) \? (\[[^\]]*\]) : (\[[^\]]*\])")


def parse(path: Path) -> dict[str, Any]:
    return hcl2.loads(path.read_text(), serialization_options=_OPTIONS)


def expression(value: Any) -> str | None:
    """The expression inside a whole-value `${...}`, or None for a literal."""
    if isinstance(value, str) and (match := _REF.match(value)):
        return match.group(1).strip()
    return None


@dataclass
class Config:
    files: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)
    # Locals Terraform decodes from a JSON file: the file, while `locals` holds its content.
    local_files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path = INFRA) -> Config:
        config = cls(files={path.name: parse(path) for path in sorted(folder.glob("*.tf"))})
        for parsed in config.files.values():
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert name not in config.resources.setdefault(rtype, {}), f"duplicate {rtype}.{name}"
                        config.resources[rtype][name] = body
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    config.data.setdefault(dtype, {}).update(named)
            for block in parsed.get("locals", []):
                for key, value in block.items():
                    assert key not in config.locals, f"local.{key} defined twice"
                    config.locals[key] = value
            for block in parsed.get("variable", []):
                config.variables.update(block)
            for block in parsed.get("output", []):
                config.outputs.update(block)
            config.terraform.extend(parsed.get("terraform", []))
            config.providers.extend(parsed.get("provider", []))
        for key, value in list(config.locals.items()):
            if isinstance(value, str) and (match := _JSON_FILE.match(value)):
                config.local_files[key] = (folder / match.group(1)).resolve()
                decoded = json.loads(config.local_files[key].read_text())
                for attribute in match.group(2).split(".")[1:]:
                    decoded = decoded[attribute]
                config.locals[key] = decoded
        return config

    def variable_values(self, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The variables' defaults, overridden by `variables`."""
        defaults = {name: body.get("default") for name, body in self.variables.items() if "default" in body}
        return defaults | (variables or {})

    def local_value(self, name: str, variables: dict[str, Any] | None = None) -> Any:
        """A local's value: literal ones as parsed, the GPU table's derived ones computed."""
        value = self.locals[name]
        if name == "env":
            assert re.sub(r"\s+", " ", value[2:-1]) == ENV_LOCAL, f"local.env changed: {value!r}"
            common = self.locals["common_env"]
            for deployable, own in self.locals["own_env"].items():
                assert not set(common) & set(own), (
                    f"{deployable} sets a common variable again: {set(common) & set(own)}"
                )
            return {deployable: common | own for deployable, own in self.locals["own_env"].items()}
        if name not in GPU_LOCALS or name in self.local_files:
            # Literal, or a `jsondecode(file(...))` local already decoded from its file at load.
            return value
        # Whole `${...}` values; these nest braces, which `expression` does not take.
        written = value[2:-1] if isinstance(value, str) and value.startswith("${") and value.endswith("}") else value
        assert re.sub(r"\s+", " ", str(written)) == GPU_LOCALS[name], f"local.{name} changed: {value!r}"
        if name == "gpu_table":
            return json.loads((INFRA / ".." / "runtune" / "gpus.json").read_text())
        if name == "vertex_machine_names":
            return [machine["name"] for machine in self.local_value("gpu_table")["vertex"]["machines"]]
        if name == "vertex_machines":
            asked = self.variable_values(variables)["vertex_machines"]
            return self.local_value("vertex_machine_names") if asked is None else list(dict.fromkeys(asked))
        gpus = self.local_value("gpu_table")["gpus"]
        if name == "gpu_names":
            return [gpu["name"] for gpu in gpus]
        if name == "gpu_shapes":
            return {
                gpu["name"]: {"cpu": str(gpu["cloud_run_cpu"]), "memory": f"{gpu['cloud_run_memory_gib']}Gi"}
                for gpu in gpus
            }
        chosen = self.variable_values(variables)["trainer_gpus"]
        return self.local_value("gpu_names") if chosen is None else list(dict.fromkeys(chosen))

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources[rtype][name]

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def for_each_items(
        self, body: dict[str, Any], variables: dict[str, Any] | None = None
    ) -> list[tuple[str, Any]] | None:
        """The (each.key, each.value) pairs of a resource's `for_each`, or None without one."""
        if "for_each" not in body:
            return None
        expr = expression(body["for_each"])
        assert expr, f"for_each must be an expression: {body['for_each']!r}"
        if match := re.fullmatch(r"(google_\w+)\.(\w+)", expr):  # another resource's instances, by key
            rtype, name = match.groups()
            items = self.for_each_items(self.resource(rtype, name), variables)
            assert items is not None, f"for_each over {expr!r}, which has no for_each"
            return [(key, _substitute_each(self.resource(rtype, name), key, value)) for key, value in items]
        if match := _MERGE.fullmatch(expr):
            merged: dict[str, Any] = {}
            for name in re.findall(r"local\.(\w+)", match.group(1)):
                value = self.local_value(name, variables)
                assert isinstance(value, dict), f"merge of local.{name}, which is no literal map"
                merged |= value
            return list(merged.items())
        if match := _LITERAL_SET.fullmatch(expr):
            items = re.findall(r'"([^"]*)"', match.group(1))
            return [(item, item) for item in items]
        match = re.fullmatch(r"(toset\()?local\.(\w+)\)?", expr)
        assert match, f"for_each over {expr!r}: only locals and resources are expanded by these tests"
        value = self.local_value(match.group(2), variables)
        if isinstance(value, dict):
            return list(value.items())
        if isinstance(value, list):
            return [(item, item) for item in value]
        inner = expression(value)
        assert inner and inner.startswith("toset("), f"local.{match.group(2)} is not a literal map or set"
        items = re.findall(r'"([^"]+)"', inner)
        return [(item, item) for item in items]

    def instances(self, rtype: str, variables: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every instance of every resource of a type as (address, body): each.* substituted, indexes
        into literal local maps resolved, and dynamic blocks over a literal list expanded."""
        for name, body in self.of_type(rtype).items():
            items = self.for_each_items(body, variables)
            if items is None:
                yield f"{rtype}.{name}", self._render_instance(body)
                continue
            for key, value in items:
                yield f'{rtype}.{name}["{key}"]', self._render_instance(_substitute_each(body, key, value))

    def instance(self, address: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """One instance by its address (`google_cloud_run_v2_job.cpu["ingest"]`), as `instances` renders it."""
        rtype = address.split(".", 1)[0]
        found = dict(self.instances(rtype, variables))
        assert address in found, f"no {address}: {sorted(found)}"
        return found[address]

    def addresses(self, variables: dict[str, Any] | None = None) -> set[str]:
        """The address of every resource instance."""
        return {address for rtype in self.resources for address, _ in self.instances(rtype, variables)}

    def moves(self) -> list[tuple[str, str]]:
        """The (from, to) addresses of every `moved` block."""
        moves = []
        for parsed in self.files.values():
            for block in parsed.get("moved", []):
                moves.append((expression(block["from"]), expression(block["to"])))
        return moves

    def _render_instance(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self._render_instance(item) for item in node]
        if isinstance(node, str):
            if match := _KEY_CONDITION.match(node):
                name, key, chosen, other = match.groups()
                return chosen if key in self.local_value(name) else other
            return _LOCAL_INDEX.sub(self._local_index, node)
        if not isinstance(node, dict):
            return node
        rendered = {key: self._render_instance(value) for key, value in node.items() if key != "dynamic"}
        kept = []
        for entry in _as_list(node.get("dynamic")):
            for block_name, dynamic in entry.items():
                if not isinstance(dynamic["for_each"], list):
                    kept.append({block_name: self._render_instance(dynamic)})  # over an expression: as written
                    continue
                (content,) = dynamic["content"]
                for index, item in enumerate(dynamic["for_each"]):
                    block = _substitute_iterator(content, block_name, index, item)
                    rendered.setdefault(block_name, []).append(self._render_instance(block))
        if kept:
            rendered["dynamic"] = kept
        return rendered

    def _local_index(self, match: re.Match[str]) -> str:
        name, key = match.group(1), match.group(2) or match.group(3)
        table = self.locals.get(name)
        if not isinstance(table, dict) or not isinstance(table.get(key), str) or expression(table[key]):
            return match.group(0)  # not a literal map of literal strings: left as written
        return f'["{table[key]}"]'


def _substitute_each(node: Any, key: str, value: Any) -> Any:
    if isinstance(node, dict):
        return {k: _substitute_each(v, key, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_each(v, key, value) for v in node]
    expr = expression(node)
    if expr == "each.key":
        return key
    if expr == "each.value":
        return value
    if expr and (match := re.fullmatch(r"each\.value\.(\w+)", expr)) and isinstance(value, dict):
        return value[match.group(1)]
    if expr and (match := _EACH_CONDITION.fullmatch(expr)) and isinstance(value, dict):
        condition = value[match.group(1)]
        assert isinstance(condition, bool), f"{expr!r}: each.value.{match.group(1)} is not a literal bool"
        return json.loads(match.group(2) if condition else match.group(3))
    if isinstance(node, str):
        node = node.replace("${each.key}", key).replace("[each.key]", f'["{key}"]')
        if isinstance(value, str):  # `sa[each.value]` -> `sa["training"]`
            node = node.replace("[each.value]", f'["{value}"]')
        if isinstance(value, dict):  # `sa[each.value.account]` -> `sa["preprocessing"]`
            node = re.sub(r"\[each\.value\.(\w+)\]", lambda m: f'["{value[m.group(1)]}"]', node)
            # Inside a string, `"${each.value.timeout_s}s"` -> `"${var.ingest_task_timeout_s}s"`.
            node = re.sub(r"\$\{each\.value\.(\w+)\}", lambda m: _inline(value[m.group(1)]), node)
        # Inside other expressions each.key becomes a string literal: trimprefix("nvidia-l4", "nvidia-").
        return re.sub(r"\beach\.key\b", json.dumps(key), node)
    return node


def _inline(value: Any) -> str:
    """A value as it reads inside a string: an expression keeps its `${...}`, a literal is its text."""
    return value if isinstance(value, str) else json.dumps(value)


def _substitute_iterator(node: Any, name: str, index: int, item: Any) -> Any:
    """A dynamic block's content for one item: `${<name>.value}` -> the item, `${<name>.key}` -> its index."""
    if isinstance(node, dict):
        return {k: _substitute_iterator(v, name, index, item) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_iterator(v, name, index, item) for v in node]
    expr = expression(node)
    if expr == f"{name}.value":
        return item
    if expr == f"{name}.key":
        return index
    return node


def blocks(body: dict[str, Any], *path: str) -> list[dict[str, Any]]:
    """Nested blocks along a path (`blocks(svc, "template", "containers")`), flattened."""
    found = [body]
    for name in path:
        found = [child for parent in found for child in _as_list(parent.get(name))]
    return found


def dynamic_blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [entry[name] for entry in _as_list(body.get("dynamic")) if name in entry]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Renderer:
    """Evaluates the expression shapes of the environment maps for test values of the variables."""

    def __init__(self, config: Config, variables: dict[str, Any], project_number: str) -> None:
        self.config = config
        self.variables = config.variable_values(variables)
        self.project_number = project_number
        names = config.locals["names"]
        self.urls = {
            key: f"https://{names[key]}-{project_number}.{self.variables['region']}.run.app"
            for key in ("gateway", "preprocessing", "training", "inference", "engine")
        }

    def render(self, value: Any) -> str:
        if not isinstance(value, str):
            return json.dumps(value) if isinstance(value, bool) else str(value)
        return re.sub(r"\$\{([^{}]+)\}", lambda m: self.evaluate(m.group(1).strip()), value)

    def evaluate(self, expr: str) -> str:
        if match := re.fullmatch(r"var\.(\w+)", expr):
            return self.render(self.variables[match.group(1)])
        if match := re.fullmatch(r"local\.urls\.(\w+)", expr):
            return self.urls[match.group(1)]
        if expr == "local.ui_origin":
            return self.render(self.variables["ui_origin"]) or self.urls["gateway"]
        if match := re.fullmatch(r"local\.images\.(\w+)", expr):
            # `images` maps each image's name to `<registry>/<name>:<tag>` (infra/main.tf).
            assert "${local.registry}/${key}:${var.image_tag}" in str(self.config.locals["images"])
            registry = self.render(self.config.locals["registry"])
            return f"{registry}/{match.group(1)}:{self.render(self.variables['image_tag'])}"
        if match := re.fullmatch(r"local\.(\w+)\.(\w+)", expr):
            return self.render(self.local(match.group(1))[match.group(2)])
        if match := re.fullmatch(r'local\.(\w+)\["([^"]+)"\]\.(\w+)', expr):
            return self.render(self.local(match.group(1))[match.group(2)][match.group(3)])
        if match := re.fullmatch(r"local\.(\w+)", expr):
            return self.render(self.local(match.group(1)))
        if match := re.fullmatch(r'trimprefix\("([^"]*)", "([^"]*)"\)', expr):
            return match.group(1).removeprefix(match.group(2))
        if match := re.fullmatch(r'google_service_account\.sa\["(\w+)"\]\.email', expr):
            return f"runtune-{match.group(1)}@{self.variables['project_id']}.iam.gserviceaccount.com"
        if match := re.fullmatch(r"jsonencode\(local\.(\w+)\)", expr):
            value = self.local(match.group(1))
            if isinstance(value, list):
                return json.dumps([self.render(item) for item in value])
            return json.dumps({key: self.render(item) for key, item in value.items()})
        if match := re.fullmatch(r"jsonencode\(var\.(\w+)\)", expr):
            return json.dumps(self.variables[match.group(1)])
        if match := re.fullmatch(r"data\.google_firebase_web_app_config\.ui\.(\w+)", expr):
            return f"test-{match.group(1)}"
        if expr == "google_firebase_web_app.ui.app_id":
            return f"1:{self.project_number}:web:test"
        if match := re.fullmatch(r"jsonencode\(\[(.+)\]\)", expr):
            return json.dumps([self.evaluate(item.strip()) for item in match.group(1).split(",")])
        if match := re.fullmatch(r"tostring\((.+)\)", expr):
            return self.evaluate(match.group(1).strip())
        raise AssertionError(f"no test rendering for the expression {expr!r}: add one to Renderer.evaluate")

    def local(self, name: str) -> Any:
        return self.config.local_value(name, self.variables)
