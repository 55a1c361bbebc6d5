"""`runtune chat | eval | vibe | export`: talk to a model, score it, compare it, take it away."""

from __future__ import annotations

import base64
import json
import mimetypes
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from runtune.cli.api import ApiError, call, client, fail
from runtune.cli.credentials import StoredLogin

console = Console()


def data_url(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def chat(
    prompt: str = typer.Argument(..., help="What to ask"),
    model: str = typer.Option(..., "--model", "-m", help="A base model id or your `ft:` model"),
    image: Path | None = typer.Option(None, exists=True, dir_okay=False, help="An image to ask about"),
    max_tokens: int = typer.Option(256, min=1),
    temperature: float = typer.Option(0.0, min=0.0, max=2.0),
) -> None:
    """Ask a model one question (the answer streams as it is written)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": data_url(image)}})
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
    }
    login = StoredLogin.load()
    headers = {"authorization": f"Bearer {login.fresh_id_token()}"}
    try:
        with httpx.stream(
            "POST", f"{login.gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=300
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response.status_code, response.json().get("error", {}).get("message", response.text))
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices", []):
                        console.print(choice.get("delta", {}).get("content") or "", end="", soft_wrap=True)
    except (ApiError, httpx.TransportError) as exc:
        raise fail(exc) from exc
    console.print()


def evaluate(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset id"),
    model: list[str] = typer.Option(..., "--model", "-m", help="Model to score (give two to compare)"),
    split: str = typer.Option("test", help="train, validation or test"),
    method: str = typer.Option("label_scoring", help="label_scoring or generation"),
    max_samples: int | None = typer.Option(None, min=1),
    wait: bool = typer.Option(True, help="Wait for the result and print the metrics"),
) -> None:
    """Evaluate one or two models on a dataset split."""
    api = client(timeout_s=300)
    body = {"dataset_id": dataset, "models": model, "split": split, "method": method, "max_samples": max_samples}
    try:
        evaluation = api.post("/v1/evaluations", json={k: v for k, v in body.items() if v is not None})
        console.print(f"Evaluation [bold]{evaluation['id']}[/] {evaluation['status']}")
        while wait and evaluation["status"] in ("queued", "running"):
            time.sleep(2)
            evaluation = api.get(f"/v1/evaluations/{evaluation['id']}")
    except ApiError as exc:
        raise fail(exc) from exc
    if not wait:
        return
    if evaluation["status"] != "succeeded":
        raise fail(RuntimeError(f"Evaluation {evaluation['status']}: {(evaluation.get('error') or {}).get('message')}"))
    table = Table("model", "accuracy", "macro-F1", "samples")
    for name, metrics in evaluation["metrics"].items():
        table.add_row(
            name,
            f"{metrics.get('accuracy', metrics.get('exact_match', 0)):.3f}",
            f"{metrics.get('macro_f1', metrics.get('token_f1', 0)):.3f}",
            str(metrics.get("samples")),
        )
    console.print(table)


def vibe(
    model: str = typer.Option(..., "--model", "-m", help="Your `ft:` model"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="A prompt (repeatable)"),
    image: list[Path] = typer.Option([], "--image", "-i", exists=True, dir_okay=False, help="Image of each prompt"),
    max_tokens: int = typer.Option(128, min=1),
) -> None:
    """The same prompts to the base and the tuned model, side by side."""
    if image and len(image) != len(prompt):
        raise fail(ValueError("Give one --image per --prompt, or none"))
    prompts = [{"prompt": text, **({"image": data_url(image[i])} if image else {})} for i, text in enumerate(prompt)]
    check = call(
        "POST", "/v1/vibe_checks", json={"model": model, "prompts": prompts, "max_tokens": max_tokens}, timeout_s=300
    )
    table = Table("prompt", f"base ({check['base_model']})", f"tuned ({check['model']})", title=check["id"])
    for row in check["results"]:
        table.add_row(row["prompt"] + (" [image]" if row["image"] else ""), row["base"], row["tuned"])
    console.print(table)


def export(
    model: str = typer.Option(..., "--model", "-m", help="Your `ft:` model"),
    format: str = typer.Option("adapter", "--format", "-f", help="adapter, merged, gguf or ollama"),
    quantization: str | None = typer.Option(
        None, "--quantization", "-q", help="gguf and ollama: f16, q8_0 or q4_k_m (the default)"
    ),
    download: Path | None = typer.Option(None, help="Download the files into this folder"),
) -> None:
    """Export a tuned model; print (or follow) its time-limited download links. GGUF and Ollama
    exports are converted by an execution of their own: this waits for it, showing its phase."""
    body = {"model": model, "format": format, "quantization": quantization}
    exported = call("POST", "/v1/exports", json={k: v for k, v in body.items() if v is not None}, timeout_s=300)
    with console.status(f"Export {exported['id']}: {exported['status']}") as status:
        while exported["status"] in ("queued", "running"):
            time.sleep(2)
            exported = call("GET", f"/v1/exports/{exported['id']}")
            status.update(f"Export {exported['id']}: {exported.get('phase') or exported['status']}")
    if exported["status"] != "succeeded":
        raise fail(RuntimeError(f"Export failed: {(exported.get('error') or {}).get('message')}"))
    for link in exported["links"]:
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(link["expires_at"]))
        console.print(f"{link['name']} ({link['bytes']} bytes, link valid until {expires})")
        if download is None:
            console.print(f"  {link['url']}")
            continue
        target = download / link["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with httpx.stream("GET", link["url"], timeout=300) as response, target.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    if download is not None:
        console.print(f"Saved to {download}")
