"""Tiny, randomly initialised models built by the reference libraries themselves and saved in the
layouts they are published in, with the reference library's own embeddings to compare against.

Each builder returns a `Published`: the keyword arguments of `import_model` for its files, and
functions giving the reference embeddings of PIL images and of sentences.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import transformers
from open_clip.tokenizer import HFTokenizer
from PIL import Image
from safetensors.torch import save_file

from services.model.tiny_tokenizer import build_tiny_tokenizer, tiny_vocab_size
from tests.media import skimage_photo_paths

EMBED = 32
IMAGE = 64
PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
SENTENCES = (
    "스튜디오에서 전화를 받는 남자",
    "밤에 바다 위로 빨간 공 두 개가 오른쪽으로 움직인다",
    "고양이가 창가에서 잠을 잔다",
    "a man answers the phone in a studio",
    "An astronaut   stands beside the flag.",
    "two red balls move right over the sea at night",
)
OPENAI_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
VISION = {"image_size": IMAGE, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32}


@dataclass
class Published:
    """A saved reference model: how to import it, and what the reference library computes."""

    name: str
    import_kwargs: dict[str, Any]
    images: Callable[[list[Image.Image]], np.ndarray]
    texts: Callable[[list[str]], np.ndarray]


def photo_paths() -> list[Path]:
    by_name = {p.name: p for p in skimage_photo_paths()}
    return [by_name[name] for name in PHOTOS]


def photos() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in photo_paths()]


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.detach().float(), dim=-1).numpy()


def _write_arch(path: Path, text_cfg: dict[str, Any], quick_gelu: bool) -> Path:
    path.write_text(json.dumps({"embed_dim": EMBED, "quick_gelu": quick_gelu, "vision_cfg": VISION,
                                "text_cfg": text_cfg}))
    return path


def _openclip_images(clip: torch.nn.Module) -> Callable[[list[Image.Image]], np.ndarray]:
    preprocess = open_clip.image_transform(IMAGE, is_train=False)  # Resize(bicubic) + CenterCrop + OpenAI norm

    @torch.no_grad()
    def embed(images: list[Image.Image]) -> np.ndarray:
        return _unit(clip.encode_image(torch.stack([preprocess(i) for i in images])))

    return embed


def openai_clip(root: Path, layout: str, seed: int = 1) -> Published:
    """open_clip's CLIP (QuickGELU, OpenAI's text transformer) saved as TorchScript, .bin or .safetensors."""
    root.mkdir(parents=True, exist_ok=True)
    arch = _write_arch(root / "tiny-openai.json", OPENAI_TEXT, quick_gelu=True)
    torch.manual_seed(seed)
    clip = open_clip.CLIP(**json.loads(arch.read_text())).eval()
    if layout == "torchscript":
        path = root / "ViT-tiny.pt"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
            torch.jit.script(clip).save(str(path))
    elif layout == "safetensors":
        path = root / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    else:
        path = root / "open_clip_pytorch_model.bin"
        torch.save(clip.state_dict(), path)

    @torch.no_grad()
    def texts(sentences: list[str]) -> np.ndarray:
        return _unit(clip.encode_text(open_clip.tokenize(sentences)))

    return Published(f"openai-{layout}", {"clip": path, "vision_arch": str(arch)}, _openclip_images(clip), texts)


def _tiny_encoder_dir(directory: Path, kind: str, seed: int) -> Path:
    """A random BERT or XLM-R over the tiny multilingual WordPiece vocabulary, save_pretrained layout."""
    torch.manual_seed(seed)
    common = {"vocab_size": tiny_vocab_size(), "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 64}
    if kind == "xlm-roberta":
        # pad_token_id 0 is the tiny tokenizer's [PAD]; positions start after it, as in XLM-R.
        model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(
            **common, max_position_embeddings=80, pad_token_id=0, bos_token_id=2, eos_token_id=3))
    else:
        model = transformers.BertModel(transformers.BertConfig(**common, max_position_embeddings=64))
    model.save_pretrained(directory)
    build_tiny_tokenizer(max_tokens=512).save_pretrained(directory)
    return directory


def openclip_hf_text(root: Path, layout: str, seed: int = 2) -> Published:
    """open_clip's multilingual architecture (xlm-roberta-*-ViT-*): an HF text tower, mean pooler, MLP proj."""
    root.mkdir(parents=True, exist_ok=True)
    text_dir = _tiny_encoder_dir(root / "xlm-roberta-tiny", "xlm-roberta", seed)
    text_cfg = {"hf_model_name": str(text_dir), "hf_tokenizer_name": str(text_dir), "hf_proj_type": "mlp",
                "hf_pooler_type": "mean_pooler", "hf_model_pretrained": False}
    arch = _write_arch(root / "tiny-xlm-roberta.json", text_cfg, quick_gelu=False)
    torch.manual_seed(seed)
    clip = open_clip.CustomTextCLIP(**json.loads(arch.read_text())).eval()
    state = clip.state_dict()
    if layout == "safetensors":
        path = root / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = root / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    tokenizer = HFTokenizer(str(text_dir), context_length=77)

    @torch.no_grad()
    def texts(sentences: list[str]) -> np.ndarray:
        return _unit(clip.encode_text(tokenizer(sentences)))

    return Published(f"openclip-xlmr-{layout}", {"clip": path, "vision_arch": str(arch), "text": text_dir},
                     _openclip_images(clip), texts)


def hf_clip(root: Path, seed: int = 3) -> Published:
    """transformers' CLIPModel saved with save_pretrained, a multilingual tokenizer beside it (as Korean CLIPs)."""
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config={"vocab_size": tiny_vocab_size(), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
                     "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": IMAGE, "patch_size": 16},
        projection_dim=EMBED)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(root)
    tokenizer = build_tiny_tokenizer(max_tokens=77)
    tokenizer.save_pretrained(root)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": IMAGE},
                                                crop_size={"height": IMAGE, "width": IMAGE},
                                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor.save_pretrained(root)

    @torch.no_grad()
    def images(pil: list[Image.Image]) -> np.ndarray:
        pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
        return _unit(_features(model.get_image_features(pixel_values=pixels)))

    @torch.no_grad()
    def texts(sentences: list[str]) -> np.ndarray:
        batch = tokenizer(sentences, padding=True, truncation=True, max_length=77, return_tensors="pt")
        return _unit(_features(model.get_text_features(input_ids=batch["input_ids"],
                                                       attention_mask=batch["attention_mask"])))

    return Published("hf-clipmodel", {"clip": root}, images, texts)


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected features.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def sentence_transformers_text(root: Path, seed: int = 4, legacy: bool = False) -> Published:
    """A sentence-transformers text model (Transformer -> mean Pooling -> Dense without bias), as
    clip-ViT-B-32-multilingual-v1, paired with an OpenAI-layout image tower.

    ``legacy`` rewrites the saved files into the v2 layout that model is published in, and the
    reference is the library's own load of those files.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    images = openai_clip(root / "vision", "torchscript", seed=seed)
    encoder_dir = _tiny_encoder_dir(root / "bert", "bert", seed)
    torch.manual_seed(seed)
    transformer = Transformer(str(encoder_dir), max_seq_length=48)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    dense = Dense(in_features=32, out_features=EMBED, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").eval()
    model.save(str(root / "st"))
    if legacy:
        _to_v2_layout(root / "st")
        model = SentenceTransformer(str(root / "st"), device="cpu").eval()

    def texts(sentences: list[str]) -> np.ndarray:
        return _unit(model.encode(list(sentences), convert_to_tensor=True))

    kwargs = {"vision": images.import_kwargs["clip"], "vision_arch": images.import_kwargs["vision_arch"],
              "text": root / "st"}
    return Published("sentence-transformers" + ("-v2" if legacy else ""), kwargs, images.images, texts)


def _to_v2_layout(directory: Path) -> None:
    """sentence-transformers 2.x files: module paths in modules.json, pooling flags, max_seq_length
    in sentence_bert_config.json, the Dense weights in pytorch_model.bin."""
    from safetensors.torch import load_file

    kinds = {"": "Transformer", "1_Pooling": "Pooling", "2_Dense": "Dense"}
    modules = [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
               for i, (path, kind) in enumerate(kinds.items())]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, "do_lower_case": False}))
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    dense = directory / "2_Dense"
    torch.save(load_file(str(dense / "model.safetensors")), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    config = json.loads((dense / "config.json").read_text())
    (dense / "config.json").write_text(json.dumps({k: config[k] for k in (
        "in_features", "out_features", "bias", "activation_function")}))


class MCLIPConfig(transformers.PretrainedConfig):
    """M-CLIP's published config class (multilingual_clip/Config_MCLIP.py)."""

    model_type = "M-CLIP"

    def __init__(self, modelBase="xlm-roberta-large", transformerDimSize=1024, imageDimSize=768, **kwargs):
        self.transformerDimensions = transformerDimSize
        self.numDims = imageDimSize
        self.modelBase = modelBase
        super().__init__(**kwargs)


class MultilingualCLIP(transformers.PreTrainedModel):
    """M-CLIP's published model class (multilingual_clip/pt_multilingual_clip.py)."""

    config_class = MCLIPConfig

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.transformer = transformers.AutoModel.from_pretrained(config.modelBase)
        self.LinearTransformation = torch.nn.Linear(in_features=config.transformerDimensions,
                                                    out_features=config.numDims)

    def forward(self, txt, tokenizer):
        txt_tok = tokenizer(txt, padding=True, return_tensors="pt")
        embs = self.transformer(**txt_tok)[0]
        att = txt_tok["attention_mask"]
        embs = (embs * att.unsqueeze(2)).sum(dim=1) / att.sum(dim=1)[:, None]
        return self.LinearTransformation(embs)


def mclip_text(root: Path, seed: int = 5) -> Published:
    """An M-CLIP text tower (XLM-R + LinearTransformation) paired with an open_clip .safetensors image tower."""
    images = openai_clip(root / "vision", "safetensors", seed=seed)
    base = _tiny_encoder_dir(root / "xlm-roberta-base", "xlm-roberta", seed)
    torch.manual_seed(seed)
    model = MultilingualCLIP(MCLIPConfig(modelBase=str(base), transformerDimSize=32, imageDimSize=EMBED)).eval()
    torch.nn.init.normal_(model.LinearTransformation.bias, std=0.5)  # make the bias matter
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model.save_pretrained(root / "mclip")
    tokenizer.save_pretrained(root / "mclip")

    @torch.no_grad()
    def texts(sentences: list[str]) -> np.ndarray:
        return _unit(model(list(sentences), tokenizer))

    kwargs = {"vision": images.import_kwargs["clip"], "vision_arch": images.import_kwargs["vision_arch"],
              "text": root / "mclip"}
    return Published("m-clip", kwargs, images.images, texts)


BUILDERS: dict[str, Callable[[Path], Published]] = {
    "openai-torchscript": lambda root: openai_clip(root, "torchscript"),
    "openclip-bin": lambda root: openai_clip(root, "bin"),
    "openclip-safetensors": lambda root: openai_clip(root, "safetensors"),
    "openclip-xlmr-bin": lambda root: openclip_hf_text(root, "bin"),
    "openclip-xlmr-safetensors": lambda root: openclip_hf_text(root, "safetensors"),
    "hf-clipmodel": hf_clip,
    "sentence-transformers": sentence_transformers_text,
    "sentence-transformers-v2": lambda root: sentence_transformers_text(root, legacy=True),
    "m-clip": mclip_text,
}
