"""The video-text model's behaviour: embeddings, temporal aggregation, tokenisation, identity.

All models are tiny and randomly initialised; the properties tested hold for any weights.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.common.errors import InvalidInput
from services.model.checkpoint import build_model
from services.model.clip4clip import Runtime, VideoTextModel, select_runtime
from services.model.config import ModelConfig, TextConfig, VisionConfig, production, tiny
from services.model.temporal import frame_steps
from services.model.towers import build_openclip

SIZE = 64  # tiny() frame size
KOREAN = "한 남자가 부엌에서 요리를 하고 있다"
TEXTS = ["a man is cooking in the kitchen", KOREAN, "Dog runs on the beach!", "ㅋㅋ 강아지"]


def _model(temporal: str = "meanP", text_kind: str = "hf", seed: int = 0) -> VideoTextModel:
    torch.manual_seed(seed)
    return build_model(tiny(temporal=temporal, text_kind=text_kind))


@pytest.fixture(scope="module")
def meanp() -> VideoTextModel:
    return _model("meanP")


@pytest.fixture(scope="module")
def seqtransf() -> VideoTextModel:
    return _model("seqTransf")


@pytest.fixture(scope="module")
def openclip_text() -> VideoTextModel:
    return _model("meanP", text_kind="openclip")


@pytest.fixture(params=["meanP-hf", "seqTransf-hf", "meanP-openclip"])
def any_model(request, meanp, seqtransf, openclip_text) -> VideoTextModel:
    return {"meanP-hf": meanp, "seqTransf-hf": seqtransf, "meanP-openclip": openclip_text}[request.param]


def _frames(b: int, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return torch.allclose(a, b, atol=atol, rtol=0)


@torch.inference_mode()
def test_outputs_are_unit_norm_float32(any_model: VideoTextModel) -> None:
    frames = _frames(3, 4)
    outputs = {
        "text": any_model.encode_text(TEXTS),
        "frames": any_model.encode_frames(frames),
        "images": any_model.encode_images(frames[:, 0]),
    }
    for name, out in outputs.items():
        assert out.dtype == torch.float32, name
        assert out.shape[1] == any_model.config.embed_dim, name
        assert _close(out.norm(dim=-1), torch.ones(out.shape[0])), name
        assert torch.isfinite(out).all(), name


@torch.inference_mode()
def test_batched_encoding_equals_single_encodings(any_model: VideoTextModel) -> None:
    frames = _frames(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    text_batch = any_model.encode_text(TEXTS)
    clip_batch = any_model.encode_frames(frames, mask)
    image_batch = any_model.encode_images(frames[:, 0])
    for i, text in enumerate(TEXTS):
        assert _close(text_batch[i], any_model.encode_text([text])[0]), text
    for i in range(3):
        assert _close(clip_batch[i], any_model.encode_frames(frames[i : i + 1], mask[i : i + 1])[0])
        assert _close(image_batch[i], any_model.encode_images(frames[i : i + 1, 0])[0])


@torch.inference_mode()
def test_image_query_equals_its_frame_embedding_under_meanp(meanp: VideoTextModel) -> None:
    images = _frames(2, 1)[:, 0]
    as_image = meanp.encode_images(images)
    as_one_frame_clip = meanp.encode_frames(images[:, None])
    frame_embedding = F.normalize(meanp.visual(meanp._pixels(images, leading_dims=1)), dim=-1)
    assert _close(as_image, as_one_frame_clip, atol=1e-6)
    assert _close(as_image, frame_embedding, atol=1e-6)


@torch.inference_mode()
def test_image_query_passes_through_the_temporal_transformer(seqtransf: VideoTextModel) -> None:
    images = _frames(2, 1)[:, 0]
    static_clip = images[:, None].expand(-1, seqtransf.config.num_frames, -1, -1, -1)
    assert _close(seqtransf.encode_images(images), seqtransf.encode_frames(static_clip))
    assert not _close(seqtransf.encode_images(images), seqtransf.encode_frames(images[:, None]), atol=1e-4)


@torch.inference_mode()
def test_seqtransf_is_order_sensitive_and_meanp_is_not(meanp: VideoTextModel) -> None:
    frames = _frames(2, 6)
    reversed_frames = frames.flip(1)
    assert _close(meanp.encode_frames(frames), meanp.encode_frames(reversed_frames))
    seqtransf = _model("seqTransf", seed=11)
    # Trained frame positions are far from their 0.01-scale init; make them count in a random model.
    seqtransf.temporal.frame_position.normal_(std=1.0)
    forward, backward = seqtransf.encode_frames(frames), seqtransf.encode_frames(reversed_frames)
    assert (forward - backward).abs().max() > 1e-4  # float noise is ~1e-7
    # Without positions the transformer is permutation-equivariant: the order is all they add.
    seqtransf.temporal.frame_position.zero_()
    assert _close(seqtransf.encode_frames(frames), seqtransf.encode_frames(reversed_frames))


def test_frame_steps_are_changes_since_the_previous_valid_frame() -> None:
    frames = torch.tensor([[[0.0], [1.0], [5.0], [9.0], [2.0]]])  # [1, 5, 1]
    mask = torch.tensor([[False, True, False, True, True]])
    steps = frame_steps(frames, mask)
    assert steps[0, :, 0].tolist() == [0.0, 0.0, 0.0, 8.0, -7.0]  # the first valid frame has no step
    assert frame_steps(frames.flip(1), mask.flip(1)).sum().item() == -steps.sum().item()


@torch.inference_mode()
def test_seqtransf_motion_tokens_flip_with_the_clip_and_leave_still_images_alone() -> None:
    torch.manual_seed(3)
    model = build_model(dataclasses.replace(tiny("seqTransf"), seq_motion=True)).eval()
    model.temporal.frame_position.zero_()  # only the motion tokens can see order now
    frames = _frames(2, 6)
    assert (model.encode_frames(frames) - model.encode_frames(frames.flip(1))).abs().max() > 1e-3
    images = _frames(2, 1)[:, 0]
    static_clip = images[:, None].expand(-1, model.config.num_frames, -1, -1, -1)
    assert _close(model.encode_images(images), model.encode_frames(static_clip))
    mask = torch.tensor([[1, 0, 1, 1, 0, 1]] * 2, dtype=torch.bool)
    assert _close(model.encode_frames(frames, mask), model.encode_frames(frames[:, mask[0]]))


def test_reversed_half_of_a_batch_is_encoded_from_the_forward_half_frames() -> None:
    torch.manual_seed(4)
    model = build_model(dataclasses.replace(tiny("seqTransf"), seq_motion=True))
    frames = _frames(3, 6)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1], [1] * 6, [0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    both, both_mask = torch.cat([frames, frames.flip(1)]), torch.cat([mask, mask.flip(1)])
    shared = model.encode_frames(both, both_mask, reversed_from=3)
    full = model.encode_frames(both, both_mask)
    assert _close(shared, full)
    shared.sum().backward()
    grad_shared = model.visual.proj.grad.clone()
    model.zero_grad()
    full.sum().backward()
    assert torch.allclose(grad_shared, model.visual.proj.grad, atol=1e-5)
    with pytest.raises(ValueError, match="played backwards"):
        model.encode_frames(torch.cat([frames, frames]), torch.cat([mask, mask]), reversed_from=3)


def test_seq_motion_needs_seqtransf_and_is_left_out_of_json_when_off() -> None:
    with pytest.raises(ValueError, match="seqTransf"):
        dataclasses.replace(tiny("meanP"), seq_motion=True)
    assert "seq_motion" not in tiny("seqTransf").to_json()  # model ids of earlier checkpoints unchanged
    on = dataclasses.replace(tiny("seqTransf"), seq_motion=True)
    assert ModelConfig.from_json(on.to_json()) == on


@pytest.mark.parametrize("temporal", ["meanP", "seqTransf"])
@torch.inference_mode()
def test_masked_clip_equals_clip_of_its_valid_frames(temporal: str, meanp, seqtransf) -> None:
    model = meanp if temporal == "meanP" else seqtransf
    frames = _frames(1, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    padded_with_noise = frames.clone()
    padded_with_noise[:, 3:] = _frames(1, 5, seed=7)
    expected = model.encode_frames(frames[:, :3])
    assert _close(model.encode_frames(frames, mask), expected)
    # What the padding holds never matters.
    assert _close(model.encode_frames(padded_with_noise, mask), expected)


@torch.inference_mode()
def test_meanp_ignores_which_frames_are_masked(meanp: VideoTextModel) -> None:
    frames = _frames(1, 6)
    mask = torch.tensor([[0, 1, 0, 1, 1, 0]], dtype=torch.bool)
    assert _close(meanp.encode_frames(frames, mask), meanp.encode_frames(frames[:, mask[0]]))


@torch.inference_mode()
def test_uint8_float_and_preprocessed_frames_agree(meanp: VideoTextModel) -> None:
    frames = _frames(2, 3)
    from_uint8 = meanp.encode_frames(frames)
    from_float = meanp.encode_frames(frames.float() / 255.0)
    from_numpy = meanp.encode_frames(frames.numpy())
    preprocessed = meanp._pixels(frames, leading_dims=2)
    assert preprocessed.shape == (2, 3, 3, SIZE, SIZE)
    assert _close(from_float, from_uint8)
    assert _close(from_numpy, from_uint8)
    assert _close(meanp.encode_frames(preprocessed), from_uint8)


@pytest.mark.parametrize(
    ("frames", "mask", "message"),
    [
        (np.zeros((1, 2, 32, 32, 3), np.uint8), None, "64x64"),
        (np.zeros((2, SIZE, SIZE, 3), np.uint8), None, "expected"),
        (np.zeros((1, 13, SIZE, SIZE, 3), np.uint8), None, "at most 12"),
        (np.zeros((1, 2, SIZE, SIZE, 3), np.int32), None, "uint8 or float"),
        (np.full((1, 2, SIZE, SIZE, 3), 255.0, np.float32), None, "[0, 1]"),
        (np.zeros((2, 2, SIZE, SIZE, 3), np.uint8), np.array([[1, 1], [0, 0]]), "at least one valid"),
        (np.zeros((2, 2, SIZE, SIZE, 3), np.uint8), np.ones((2, 3)), "mask must have shape"),
    ],
)
def test_bad_frames_are_invalid_input(meanp: VideoTextModel, frames, mask, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        meanp.encode_frames(frames, mask)


@pytest.mark.parametrize("texts", ["a plain string", ["ok", 3], [None]])
def test_bad_texts_are_invalid_input(meanp: VideoTextModel, texts) -> None:
    with pytest.raises(InvalidInput):
        meanp.encode_text(texts)


def test_empty_batches_give_empty_embeddings(meanp: VideoTextModel) -> None:
    assert meanp.encode_text([]).shape == (0, 64)
    assert meanp.encode_frames(np.zeros((0, 2, SIZE, SIZE, 3), np.uint8)).shape == (0, 64)
    assert meanp.encode_images(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, 64)


# -- tokenisation ----------------------------------------------------------------------------------


def test_korean_tokenizes_to_known_tokens_and_truncates_to_max_tokens(meanp: VideoTextModel) -> None:
    tokenizer = meanp.text.tokenizer
    ids = meanp.text.tokenize([KOREAN])["input_ids"][0].tolist()
    assert tokenizer.unk_token_id not in ids
    assert len(ids) > 10  # syllables, not one opaque token
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == KOREAN.replace(" ", "")
    long = meanp.text.tokenize([KOREAN * 10, "짧다"])
    assert long["input_ids"].shape == (2, 32)
    assert long["input_ids"][0, -1].item() == tokenizer.sep_token_id  # truncated, still terminated
    assert long["attention_mask"][1].sum().item() < 32  # the short one is padded, not truncated


def test_mixed_english_and_jamo_have_no_unknown_tokens(meanp: VideoTextModel) -> None:
    ids = meanp.text.tokenize(TEXTS)["input_ids"]
    assert (ids != meanp.text.tokenizer.unk_token_id).all()


def test_openclip_tokenizer_truncates_to_max_tokens(openclip_text: VideoTextModel) -> None:
    tokens = openclip_text.text.tokenize(["a cat", KOREAN * 10])["input_ids"]
    eot = openclip_text.text.tokenizer.eot_token_id
    assert tokens.shape == (2, 32)
    assert tokens[1, -1].item() == eot  # truncated text still ends with end-of-text
    assert tokens[0].argmax().item() == 3  # <sot> a cat <eot>


@torch.inference_mode()
def test_long_text_embeds_like_its_first_max_tokens(meanp: VideoTextModel) -> None:
    long = " ".join(["강아지가 공원에서 뛰어논다"] * 20)
    tokens = meanp.text.tokenize([long])["input_ids"][0]
    prefix = meanp.text.tokenizer.decode(tokens[1:-1])
    assert _close(meanp.encode_text([long]), meanp.encode_text([prefix]))


# -- identity ----------------------------------------------------------------------------------------


def test_model_id_is_stable_for_identical_weights_and_changes_with_any_weight() -> None:
    model, twin = _model(seed=3), _model(seed=3)
    original = model.model_id
    assert len(original) == 16 and model.model_id == original == twin.model_id
    assert _model(seed=4).model_id != original
    params = dict(model.named_parameters())
    for name in ("visual.proj", "text.encoder.embeddings.word_embeddings.weight", "logit_scale"):
        with torch.no_grad():
            params[name].view(-1)[0] += 1e-3  # in place, as an optimiser step does
        assert model.model_id != original, name
        with torch.no_grad():
            params[name].copy_(dict(twin.named_parameters())[name])
        assert model.model_id == original, name  # identical weights again: identical id


def test_model_id_depends_on_the_config() -> None:
    assert _model("meanP", seed=5).model_id != _model("seqTransf", seed=5).model_id


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runtime_keeps_the_model_id_and_float32_outputs(dtype: torch.dtype) -> None:
    model = _model(seed=6)
    reference_id = model.model_id
    frames, mask = _frames(2, 4), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    with torch.inference_mode():
        reference = {"text": model.encode_text(TEXTS), "clips": model.encode_frames(frames, mask)}
    model.to_runtime(Runtime(torch.device("cpu"), dtype))
    assert model.dtype == dtype
    assert model.model_id == reference_id
    with torch.inference_mode():
        # Padded frames are zeros, which float16 normalisation would turn into NaN.
        low = {"text": model.encode_text(TEXTS), "clips": model.encode_frames(frames, mask)}
    for name, out in low.items():
        assert out.dtype == torch.float32, name
        assert _close(out.norm(dim=-1), torch.ones(out.shape[0])), name
        assert (out * reference[name]).sum(-1).min() > 0.95, name


def test_select_runtime_prefers_cuda_half_precision() -> None:
    assert select_runtime("cpu") == Runtime(torch.device("cpu"), torch.float32)
    assert select_runtime("cuda") == Runtime(torch.device("cuda"), torch.float16)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_runtime().device.type == expected


# -- training hooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("temporal", "text_kind"), [("seqTransf", "hf"), ("meanP", "openclip")])
def test_param_groups_split_pretrained_towers_from_new_layers(temporal: str, text_kind: str) -> None:
    model = _model(temporal, text_kind)
    groups = {g["name"]: g for g in model.param_groups(pretrained_lr=1e-7, new_lr=1e-4)}
    pretrained = {id(p) for p in groups["pretrained"]["params"]}
    new = {id(p) for p in groups["new"]["params"]}
    assert groups["pretrained"]["lr"] == 1e-7 and groups["new"]["lr"] == 1e-4
    assert not pretrained & new
    assert pretrained | new == {id(p) for p in model.parameters()}
    assert id(model.logit_scale) in new
    assert {id(p) for p in model.visual.parameters()} <= pretrained
    assert {id(p) for p in model.temporal.parameters()} <= new
    if text_kind == "hf":
        assert {id(p) for p in model.text.proj.parameters()} <= new
        assert {id(p) for p in model.text.encoder.parameters()} <= pretrained
    torch.optim.AdamW(list(groups.values()))  # accepted as-is by an optimiser


def test_one_training_step_reaches_every_new_layer() -> None:
    model = _model("seqTransf").train()
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-6)
    text = model.encode_text(["a dog", "a cat"])
    video = model.encode_frames(_frames(2, 3).float() / 255.0)
    logits = model.similarity_logits(text, video)
    labels = torch.arange(2)
    loss = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    loss.backward()
    for group in model.param_groups(1e-7, 1e-4):
        if group["name"] == "new":
            assert all(p.grad is not None for p in group["params"])
    assert model.visual.proj.grad is not None
    assert model.text.encoder.embeddings.word_embeddings.weight.grad is not None


# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [tiny(), tiny("seqTransf", "openclip"), production()])
def test_config_json_round_trip(config: ModelConfig) -> None:
    assert ModelConfig.from_json(config.to_json()) == config
    assert config.to_json() == ModelConfig.from_json(config.to_json()).to_json()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ModelConfig(temporal="maxP"),
        lambda: ModelConfig(embed_dim=0),
        lambda: ModelConfig(max_tokens=100),
        lambda: TextConfig(kind="gpt"),
        lambda: TextConfig(pooling="max"),
        lambda: TextConfig(hf_config={"hidden_size": 64}),
        lambda: VisionConfig(openclip_name=None, image_size=65, patch_size=16),
        lambda: ModelConfig.from_dict({"vision": {"colour": True}}),
    ],
)
def test_invalid_configs_are_rejected(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_production_frame_encoder_is_vit_b32_at_224() -> None:
    config = production()
    assert (config.embed_dim, config.num_frames, config.max_tokens) == (512, 12, 32)
    visual = build_openclip(config).visual
    assert visual.image_size == (224, 224) and visual.patch_size == (32, 32)
    assert visual.proj.shape == (768, 512)


def test_production_needs_a_local_text_encoder() -> None:
    with pytest.raises(ValueError, match="hf_text_dir"):
        build_model(production())
