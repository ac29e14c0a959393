"""`medlib demo`: a small Gradio app to ask a checkpoint about one uploaded image, through 40_inference's path."""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlib.data import TASKS

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".dcm")
# A starting question per task: picking a task fills it in. The presence and count wordings are those
# of the synthetic set (what the tiny profile learns); the others follow the record contract's tasks.
TASK_QUESTIONS = {
    "vqa_closed": "Is there a lesion in this image? Answer yes or no.",
    "counting": "How many lesions are visible? Answer with a number.",
    "vqa_open": "What abnormality is shown in this image?",
    "classification": "Which option best describes this image?",
    "multi_label": "Which findings are present? List every one that applies.",
    "detection": "Locate every lesion as [x1, y1, x2, y2] boxes.",
    "instance_detection": "Locate every lesion instance as labelled [x1, y1, x2, y2] boxes.",
    "regression": "Estimate the measurement asked for as a number.",
    "report_generation": "Write the findings and impression for this image.",
}
TASK_CHOICES = {"vqa_closed": "yes, no"}
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
CAUTION = "A research model: its answers are not a diagnosis."


@dataclass
class DemoSettings:
    """How the checkpoint is asked: the generation options of 40_inference."""

    image_size: int | None = None
    answer_format: str = "think_answer"
    system_prompt: str | None = None
    max_new_tokens: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    cache_implementation: str = "auto"
    source: str = "command line"


def demo_record(image_path: str | Path, question: str, task: str, choices: str = "") -> tuple[dict[str, Any], Path]:
    """A record (docs/architecture.md contract) for one uploaded image and question, and the folder its path is relative to."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not question or not question.strip():
        raise ValueError("ask a question (or pick a task to start from its question)")
    path = Path(image_path)
    if path.suffix.lower() not in IMAGE_TYPES:
        raise ValueError(f"{path.name}: not an image this demo reads ({', '.join(IMAGE_TYPES)})")
    record: dict[str, Any] = {"id": "demo-0", "dataset": "demo", "task": task, "question": question.strip(),
                              "answer": "", "images": [path.name], "meta": {}}
    options = [option.strip() for option in (choices or "").split(",") if option.strip()]
    if options:
        record["choices"] = options
    return record, path.parent


def reasoning_text(raw: str) -> str:
    """The model's `<think>…</think>` content ('' when it gave none)."""
    match = _THINK.search(raw or "")
    return match.group(1).strip() if match else ""


def ask(model: Any, processor: Any, image_path: str | Path, question: str, task: str, choices: str = "",
        settings: DemoSettings | None = None) -> dict[str, Any]:
    """Answer one question about one image with inference.predict_records; answer, parsed value, reasoning, raw."""
    from medlib.evaluation import inference

    settings = settings or DemoSettings()
    record, data_root = demo_record(image_path, question, task, choices)
    prediction = inference.predict_records(
        model, processor, [record], data_root, checkpoint="demo", image_size=settings.image_size,
        answer_format=settings.answer_format, system_prompt=settings.system_prompt, batch_size=1,
        max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams,
        length_penalty=settings.length_penalty, cache_implementation=settings.cache_implementation,
        progress=False)[0]
    return {"answer": inference.answer_text(prediction), "parsed": prediction["parsed"],
            "parse_error": prediction["parse_error"], "reasoning": reasoning_text(prediction["raw"]),
            "raw": prediction["raw"]}


def model_view(image_path: str | Path, settings: DemoSettings) -> Any:
    """The uploaded image as the model receives it (medlib's loader and resizing)."""
    from medlib.data import load_record_images

    record, data_root = demo_record(image_path, "preview", "vqa_open")
    return load_record_images(record, data_root, settings.image_size)[0]


def _parsed_text(result: dict[str, Any]) -> str:
    """The parsed value as JSON, or why it could not be parsed."""
    if result["parsed"] is None:
        return f"(not parsed: {result['parse_error'] or 'no answer'})"
    return json.dumps(result["parsed"])


def build_app(model: Any, processor: Any, settings: DemoSettings, title: str) -> Any:
    """The Gradio Blocks app: upload, task, question (and options) → answer, parsed value, reasoning, raw output."""
    import gradio as gr

    def on_upload(path: str | None) -> Any:
        if not path:
            return None
        try:
            return model_view(path, settings)
        except Exception as error:  # noqa: BLE001 - any unreadable upload is the user's message, not a crash
            raise gr.Error(f"{Path(path).name}: cannot read this image: {error}") from error

    def on_task(task: str, question: str, choices: str) -> tuple[str, str]:
        templates = set(TASK_QUESTIONS.values())
        keep = question.strip() and question.strip() not in templates
        return (question if keep else TASK_QUESTIONS.get(task, "")), TASK_CHOICES.get(task, "" if not keep else choices)

    def on_ask(path: str | None, task: str, question: str, choices: str) -> tuple[str, str, str, str]:
        if not path:
            raise gr.Error("upload an image first")
        try:
            result = ask(model, processor, path, question, task, choices, settings)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        return result["answer"] or "(empty)", _parsed_text(result), result["reasoning"] or "(none given)", result["raw"]

    with gr.Blocks(title="medlib demo", analytics_enabled=False) as app:
        gr.Markdown(f"## medlib demo · `{title}`\nPrompt, image preprocessing and answer parsing are those of "
                    f"40_inference ({settings.source}: answer format `{settings.answer_format}`, image size "
                    f"{settings.image_size or 'processor default'}). {CAUTION}")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Image (PNG, JPEG, DICOM)", file_types=list(IMAGE_TYPES), elem_id="upload")
                preview = gr.Image(label="What the model sees", interactive=False, height=240, elem_id="preview")
            with gr.Column():
                task = gr.Dropdown(list(TASKS), value="vqa_closed", label="Task", elem_id="task")
                question = gr.Textbox(TASK_QUESTIONS["vqa_closed"], label="Question", lines=2, elem_id="question")
                choices = gr.Textbox(TASK_CHOICES["vqa_closed"], label="Options (comma-separated, closed questions)",
                                     elem_id="choices")
                button = gr.Button("Ask", variant="primary", elem_id="ask")
                answer = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                parsed = gr.Textbox(label="Parsed value", interactive=False, elem_id="parsed")
                reasoning = gr.Textbox(label="Reasoning", interactive=False, lines=2, elem_id="reasoning")
                with gr.Accordion("Raw output", open=False):
                    raw = gr.Textbox(show_label=False, interactive=False, lines=3, elem_id="raw")
        upload.change(on_upload, upload, preview)
        task.input(on_task, [task, question, choices], [question, choices])
        button.click(on_ask, [upload, task, question, choices], [answer, parsed, reasoning, raw])
    return app


def settings_from_params(params_path: str, overrides: list[str], notebooks_dir: str = "notebooks"
                         ) -> tuple[DemoSettings, dict[str, Any]]:
    """40_inference's resolved parameters of an experiment (as `medlib run` passes them) as demo settings."""
    from medlib.pipeline.config import ConfigError, discover_stages, display_path, load_experiment, resolved_parameters

    stages = discover_stages(notebooks_dir)
    stage = next((s for s in stages if s.block == "inference"), None)
    if stage is None:
        raise ConfigError(f"{notebooks_dir}: no inference notebook to take the generation options from")
    resolved = resolved_parameters(load_experiment(params_path, overrides), stages)[stage.stem]
    settings = DemoSettings(image_size=resolved.get("image_size") or None,
                            answer_format=resolved.get("answer_format", "think_answer"),
                            system_prompt=resolved.get("system_prompt") or None,
                            max_new_tokens=resolved.get("max_new_tokens", 0), num_beams=resolved.get("num_beams", 1),
                            length_penalty=resolved.get("length_penalty", 1.0),
                            cache_implementation=resolved.get("cache_implementation", "auto"),
                            source=f"{display_path(params_path)} inference")
    return settings, resolved


def _checkpoint(model: str, resolved: dict[str, Any]) -> str:
    """`base`/`sft`/`grpo` as 40_inference names them (with --params), else the folder or hub id given."""
    if not resolved or model not in ("base", "sft", "grpo"):
        return model
    if model == "base":
        return str(resolved["model_id"])
    from medlib.pipeline import workspace

    return str(workspace.stage_paths(resolved["runs_dir"])[f"{model}_final"])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib demo --model DIR [--params P] [--port N]`."""
    parser = subparsers.add_parser(
        "demo", help="serve a small web app to ask a checkpoint about an uploaded image",
        description="Load a checkpoint once and serve a Gradio app: upload an image (PNG/JPEG, DICOM where "
        "medlib's loader reads it), pick a task or ask a question, and see the answer, its parsed value and the "
        "reasoning, generated exactly as 40_inference does. With --params, the generation options (image size, "
        "answer format, system prompt, beams, token budget) are the experiment's inference parameters.")
    parser.add_argument("--model", required=True,
                        help="checkpoint folder or hub id; with --params also base | sft | grpo")
    parser.add_argument("--params", help="experiment file whose inference parameters to use, e.g. params/tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="BLOCK.KEY=VALUE",
                        help="override a parameter of --params; repeatable")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s, this machine)")
    parser.add_argument("--port", type=int, default=7860, help="default: %(default)s")
    parser.add_argument("--backend", default="auto", choices=["auto", "unsloth", "hf"])
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU) | cuda | mps | cpu")
    parser.add_argument("--image-size", type=int, default=0, help="resize images square (0: processor's policy)")
    parser.add_argument("--answer-format", default="think_answer", choices=["think_answer", "answer_tags", "plain"])
    parser.add_argument("--system-prompt", default="")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: per-task defaults")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Handler of `medlib demo`: load the checkpoint, then serve until interrupted."""
    # No usage reports, and no fonts fetched from the web: the demo must work offline (hospital networks).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from medlib import models
    from medlib.pipeline import workspace

    if args.params:
        settings, resolved = settings_from_params(args.params, args.overrides)
    else:
        settings, resolved = DemoSettings(image_size=args.image_size or None, answer_format=args.answer_format,
                                          system_prompt=args.system_prompt or None,
                                          max_new_tokens=args.max_new_tokens), {}
    checkpoint = _checkpoint(args.model, resolved)
    if resolved and args.model != "base" and not Path(checkpoint).exists():
        raise SystemExit(f"medlib demo: {checkpoint}: checkpoint not found; run 20_sft / 30_grpo first")
    backend = models.activate_backend(resolved.get("backend", args.backend))
    pixels = workspace.pixels(settings.image_size) if settings.image_size else None
    model, processor, backend = models.load_model(
        checkpoint, backend=backend, device=resolved.get("device", args.device),
        trust_remote_code=resolved.get("trust_remote_code", args.trust_remote_code),
        min_pixels=pixels, max_pixels=pixels)
    model = models.for_inference(model, backend)
    import gradio as gr

    from medlib.pipeline.config import display_path

    app = build_app(model, processor, settings, display_path(checkpoint))
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    print(f"[medlib] demo of {checkpoint} on http://{args.host}:{args.port}", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, theme=theme,
               footer_links=[])
    return 0
