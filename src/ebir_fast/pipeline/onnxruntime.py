"""The ONNX Runtime backend: the exported graphs behind the same stage and tagger interfaces.

``load_onnx_pipeline(folder)`` returns an :class:`~ebir_fast.pipeline.EBIRPipeline` whose stages
run :mod:`ebir_fast.deploy.graphs` graphs, so LFO, the encoder reuse, the per-prompt text cache,
padding, tiling and the colour fix are the PyTorch pipeline's own code. Providers: CUDA when
``onnxruntime-gpu`` offers it, else CPU (or as given). The graphs export the VAE posterior's mode,
so a ``seed`` is refused here. Image sides are padded to multiples of 64 (the graphs' latent
sides are multiples of 8), by the same mirror padding, and cropped back.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ebir_fast.models.tiling import Tiling, tiled_map

TWO_GB = 2**31 - 1
#: The graphs the Winograd rewrite applies to: full-resolution 3x3 convolutions dominate them
#: (the UNet runs at 1/8 resolution and is above protobuf's 2 GB once rewritten).
WINOGRAD_GRAPHS = ("f_vae_encoder", "g_vae_encoder", "vae_decoder")
#: The graphs whose erf GELUs are fused (:mod:`ebir_fast.deploy.gelu`): the UNets' GELUs sit in
#: graphs above protobuf's 2 GB, which cannot be rewritten in memory; the CLIP text encoder's
#: are quick-GELUs (sigmoid), which ONNX Runtime fuses itself.
GELU_GRAPHS = ("tagger",)
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class Graph:
    """One ONNX Runtime session; torch tensors in and out, cast to the graph's input types.

    ``winograd``: rewrite the graph's 3x3 convolutions to Winograd F(m x m, 3 x 3) with this
    tile (:mod:`ebir_fast.deploy.winograd`) before the session is made; ``winograd_convs`` says
    how many were rewritten. ``gelu``: fuse the exporter's erf GELUs into ONNX Runtime's ``Gelu``
    (:mod:`ebir_fast.deploy.gelu`); ``gelu_fusions`` says how many.
    """

    def __init__(
        self,
        path: Path,
        providers: Sequence[str],
        threads: int | None = None,
        winograd: int | None = None,
        gelu: bool = False,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        self.path = path
        self.winograd_convs = self.gelu_fusions = 0
        source: str | bytes = str(path)
        if winograd or gelu:
            import onnx

            model = onnx.load(str(path))
            if winograd:
                from ebir_fast.deploy.winograd import rewrite

                model, self.winograd_convs = rewrite(model, winograd)
            if gelu:
                from ebir_fast.deploy.gelu import fuse_gelu

                model, self.gelu_fusions = fuse_gelu(model)
            if model.ByteSize() > TWO_GB:
                raise ValueError(
                    f"{'winograd' if winograd else 'gelu'}: {path.name} exceeds 2 GB once "
                    f"rewritten; rewrite only graphs below that ({', '.join(WINOGRAD_GRAPHS)}, "
                    f"{', '.join(GELU_GRAPHS)})"
                )
            source = model.SerializeToString()
            del model
        self.session = ort.InferenceSession(source, opts, providers=list(providers))
        self.inputs = {i.name: _NP[i.type] for i in self.session.get_inputs()}
        self.calls = 0

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            k: inputs[k].detach().cpu().numpy().astype(t, copy=False)
            for k, t in self.inputs.items()
        }
        self.calls += 1
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


class OrtPromptEncoder:
    """Tokenizer + text-encoder graph with the same per-string cache as the PyTorch one."""

    def __init__(self, tokenizer, graph: Graph, max_length: int, cache_size: int = 256) -> None:
        self.tokenizer, self.graph, self.max_length = tokenizer, graph, max_length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.RLock()

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:  # [B, 77, D]
        with self._lock:
            todo = list(dict.fromkeys(p for p in prompts if p not in self._cache))
            if todo:
                ids = self.tokenizer(
                    todo,
                    max_length=self.max_length,
                    padding="max_length",
                    truncation=True,
                    return_tensors="pt",
                ).input_ids
                for p, e in zip(todo, self.graph(input_ids=ids), strict=True):
                    self._cache[p] = e
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            for p in prompts:
                self._cache.move_to_end(p)
            return torch.stack([self._cache[p] for p in prompts])


class OrtOneStepStage:
    """An OSEDiff stage from its encoder / UNet graphs and the shared decoder graph."""

    uses_prompt = True
    size_multiple = 64

    def __init__(self, encoder: Graph, unet: Graph, decoder: Graph, text: OrtPromptEncoder):
        self.encoder, self.unet, self.decoder, self.text = encoder, unet, decoder, text

    @property
    def calls(self) -> dict[str, int]:
        return {"encode": self.encoder.calls, "unet": self.unet.calls, "decode": self.decoder.calls}

    @calls.setter
    def calls(self, value: dict[str, int]) -> None:
        self.encoder.calls, self.unet.calls, self.decoder.calls = (
            value["encode"],
            value["unet"],
            value["decode"],
        )

    def prepare(
        self,
        images: torch.Tensor,  # [B, 3, H, W] in [0, 1], H and W multiples of 64
        *,
        generator: torch.Generator | None = None,
        tiling: Tiling | None = None,
    ) -> torch.Tensor:  # [B, 4, H / 8, W / 8]
        if generator is not None:
            raise ValueError(
                "seed: the ONNX graphs compute the VAE posterior's mode; use seed=None (or the "
                "PyTorch backend to sample the posterior)"
            )
        enc = lambda t: self.encoder(image=t)  # noqa: E731
        if tiling is None:
            return enc(images)
        return tiled_map(enc, images, tiling.encoder, tiling.encoder_overlap, 1 / 8)

    def run(
        self, z: torch.Tensor, prompts: Sequence[str] | None, *, tiling: Tiling | None = None
    ) -> torch.Tensor:  # [B, 3, 8h, 8w] in [0, 1]
        if prompts is None or len(prompts) != z.shape[0]:
            raise ValueError(
                f"prompts: expected {z.shape[0]} prompt strings (one per image), got {prompts!r}"
            )
        text = self.text(list(prompts))
        h, w = z.shape[-2:]
        if tiling is None or (h <= tiling.latent and w <= tiling.latent):
            x0 = self.unet(latent=z, text=text)
        else:
            x0 = torch.cat(
                [
                    tiled_map(
                        lambda t, e=text[i : i + 1]: self.unet(latent=t, text=e),
                        z[i : i + 1],
                        tiling.latent,
                        tiling.latent_overlap,
                    )
                    for i in range(z.shape[0])
                ]
            )
        dec = lambda t: self.decoder(x0=t)  # noqa: E731
        if tiling is None:
            return dec(x0).clamp(0, 1)
        return tiled_map(dec, x0, tiling.decoder, tiling.decoder_overlap, 8).clamp(0, 1)


class OrtDapeTagger:
    """DAPE tags from the tagger graph: RAM's preprocessing here, thresholds in float32."""

    def __init__(self, graph: Graph, meta: dict) -> None:
        self.graph = graph
        self.size = int(meta["image_size"])
        self.antialias = bool(meta["antialias"])
        self.tags = list(meta["tags"])
        self.thresholds = torch.tensor(meta["thresholds"], dtype=torch.float32)
        self.exclude = list(meta.get("exclude", ()))

    def __call__(self, images: torch.Tensor) -> list[str]:
        from ebir_fast.models.ram import preprocess

        logits = self.graph(pixels=preprocess(images, self.size, antialias=self.antialias))
        on = torch.sigmoid(logits.float()) > self.thresholds
        if self.exclude:
            on[:, self.exclude] = False
        return [", ".join(self.tags[i] for i in row.nonzero().flatten().tolist()) for row in on]


def load_onnx_pipeline(
    folder: str | Path,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    winograd: int | str | None = "auto",
):
    """An :class:`~ebir_fast.pipeline.EBIRPipeline` running the graphs exported to ``folder``.

    ``winograd``: the tile (2 or 4) of the Winograd rewrite of the fp32 VAE graphs' 3x3
    convolutions, ``None`` for none, or ``"auto"``: F(4 x 4, 3 x 3) when the CPU provider runs
    them (GPU providers choose their convolution algorithms themselves). The fp32 tagger's GELUs
    are fused for the CPU provider too (:mod:`ebir_fast.deploy.gelu`).
    """
    from transformers import CLIPTokenizer

    from ebir_fast.deploy.onnx_export import FORMAT_NAME, FORMAT_VERSION
    from ebir_fast.models.tagger import FixedPromptTagger, NullTagger
    from ebir_fast.pipeline.ebir import EBIRPipeline

    folder = Path(folder)
    meta_path = folder / "graphs.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"folder: {folder} has no graphs.json; export the graphs first "
            "(python export/export_onnx.py)"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"folder: {meta_path} is {meta.get('format')!r} v{meta.get('version')}, expected "
            f"{FORMAT_NAME!r} v{FORMAT_VERSION}"
        )
    if meta.get("image_size") is not None:
        raise ValueError(
            f"folder: {folder} holds static {meta['image_size']} graphs (for TensorRT); export "
            "dynamic graphs (image_size=None) for ONNX Runtime"
        )
    providers = list(providers) if providers is not None else default_providers()
    on_cpu = providers[:1] == ["CPUExecutionProvider"]
    if winograd == "auto":
        winograd = 4 if on_cpu else None
    elif winograd is not None and winograd not in (2, 4):
        raise ValueError(f"winograd: expected 2, 4, None or 'auto', got {winograd!r}")
    missing = [g["file"] for g in meta["graphs"].values() if not (folder / g["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"folder: {folder} lacks {missing} named by graphs.json")
    fp32 = meta["precision"] == "fp32"
    graphs = {
        n: Graph(
            folder / g["file"],
            providers,
            threads,
            winograd if n in WINOGRAD_GRAPHS and fp32 else None,
            gelu=on_cpu and fp32 and n in GELU_GRAPHS,
        )
        for n, g in meta["graphs"].items()
    }
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    text = OrtPromptEncoder(tokenizer, graphs["text_encoder"], meta["text"]["max_length"])
    stages = {
        k: OrtOneStepStage(
            graphs[f"{k}_vae_encoder"], graphs[f"{k}_unet"], graphs["vae_decoder"], text
        )
        for k in meta["stages"]
    }
    spec = meta["tagger"]
    if spec["kind"] == "dape":
        tagger = OrtDapeTagger(graphs["tagger"], spec)
    elif spec["kind"] == "fixed":
        tagger = FixedPromptTagger(spec["prompt"])
    else:
        tagger = NullTagger()
    return EBIRPipeline(stages["g"], stages.get("f"), tagger)
