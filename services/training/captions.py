"""Korean and English captions for synthetic scenes, from paraphrase templates.

Each language has several templates that vary word order and phrasing; the last ones are held out
of training so evaluation also measures generalisation to unseen phrasings. Korean particles
(이/가, 을/를, 으로/로) follow the final consonant of the word they attach to.
"""

from __future__ import annotations

from collections.abc import Callable

from services.training.scenes import Attributes

#: The paper's limit on Korean caption length, in characters.
MAX_KO_CHARS = 50

_KO_SHAPE = {"circle": "공", "square": "네모", "triangle": "삼각형", "star": "별", "diamond": "마름모"}
_KO_COLOUR = {"red": "빨간", "blue": "파란", "green": "초록", "yellow": "노란", "white": "하얀", "purple": "보라"}
_KO_COLOUR_NOUN = {
    "red": "빨간색", "blue": "파란색", "green": "초록색", "yellow": "노란색", "white": "흰색", "purple": "보라색",
}
_KO_COUNT = {1: "한 개", 2: "두 개", 3: "세 개"}
_KO_PLACE = {"sea": "바다", "forest": "숲", "city": "도시", "desert": "사막", "studio": "스튜디오"}
_KO_PLACE_OVER = {
    "sea": "바다 위로", "forest": "숲 위로", "city": "도시 위로", "desert": "사막 위로", "studio": "스튜디오 안에서",
}
_KO_PLACE_AT = {
    "sea": "바다 위에서", "forest": "숲속에서", "city": "도시에서", "desert": "사막에서", "studio": "스튜디오에서",
}
_KO_TIME = {"day": "낮", "night": "밤"}
_KO_SIDE = {"left": "왼쪽", "right": "오른쪽", "up": "위쪽", "down": "아래쪽"}
_KO_PASS = {
    "left": "왼쪽으로 지나간다", "right": "오른쪽으로 지나간다", "up": "위로 올라간다", "down": "아래로 내려간다",
}

_EN_SHAPE = {
    "circle": ("ball", "balls"), "square": ("square", "squares"), "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"), "diamond": ("diamond", "diamonds"),
}
_EN_COUNT = {1: "one", 2: "two", 3: "three"}
_EN_PLACE_OVER = {
    "sea": "over the sea", "forest": "over the forest", "city": "over the city", "desert": "over the desert",
    "studio": "in the studio",
}
_EN_TIME_AT = {"day": "during the day", "night": "at night"}
_EN_TIME_ADJ = {"day": "daytime", "night": "night"}
_EN_WARD = {"left": "leftward", "right": "rightward", "up": "upward", "down": "downward"}

#: Words a caption of each language may use for each attribute value (tests check them).
SURFACE_FORMS: dict[str, dict[str, dict[object, tuple[str, ...]]]] = {
    "ko": {
        "shape": {k: (v,) for k, v in _KO_SHAPE.items()},
        "colour": {k: (_KO_COLOUR[k], _KO_COLOUR_NOUN[k]) for k in _KO_COLOUR},
        "count": {k: (v,) for k, v in _KO_COUNT.items()},
        "motion": {"left": ("왼쪽",), "right": ("오른쪽",), "up": ("위쪽", "올라"), "down": ("아래쪽", "내려")},
        "place": {k: (v,) for k, v in _KO_PLACE.items()},
        "time": {k: (v,) for k, v in _KO_TIME.items()},
    },
    "en": {
        "shape": {k: v for k, v in _EN_SHAPE.items()},
        "colour": {k: (k,) for k in _KO_COLOUR},
        "count": {k: (v,) for k, v in _EN_COUNT.items()},
        "motion": {k: (k, _EN_WARD[k]) for k in _EN_WARD},
        "place": {k: (k,) for k in _KO_PLACE},
        "time": {"day": ("day", "daytime"), "night": ("night",)},
    },
}


def has_final_consonant(word: str) -> bool:
    """Whether a Hangul word ends in a final consonant (받침), which picks 이/을/으로 over 가/를/로."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def particle(word: str, pair: str) -> str:
    """``word`` with the right form of a two-form particle: particle('공', '이/가') == '공이'."""
    with_final, without_final = pair.split("/")
    final = has_final_consonant(word)
    if pair == "으로/로" and final and (ord(word[-1]) - 0xAC00) % 28 == 8:  # ㄹ takes 로: 별로
        final = False
    return word + (with_final if final else without_final)


def _ko_parts(a: Attributes) -> dict[str, str]:
    return {
        "shape": _KO_SHAPE[a.shape],
        "colour": _KO_COLOUR[a.colour],
        "colour_noun": _KO_COLOUR_NOUN[a.colour],
        "count": _KO_COUNT[a.count],
        "place": _KO_PLACE[a.place],
        "place_over": _KO_PLACE_OVER[a.place],
        "place_at": _KO_PLACE_AT[a.place],
        "time": _KO_TIME[a.time],
        "toward": particle(_KO_SIDE[a.motion], "으로/로"),
        "passes": _KO_PASS[a.motion],
    }


def _en_parts(a: Attributes) -> dict[str, str]:
    one = a.count == 1
    return {
        "shape": _EN_SHAPE[a.shape][0 if one else 1],
        "colour": a.colour,
        "count": _EN_COUNT[a.count],
        "place": a.place,
        "place_over": _EN_PLACE_OVER[a.place],
        "time_at": _EN_TIME_AT[a.time],
        "time_adj": _EN_TIME_ADJ[a.time],
        "dir": a.motion,
        "ward": _EN_WARD[a.motion],
        "s": "s" if one else "",  # verb agreement: "one ball moves", "two balls move"
    }


_TEMPLATES: dict[str, tuple[Callable[[dict[str, str]], str], ...]] = {
    "ko": (
        # 밤에 바다 위로 빨간 공 두 개가 오른쪽으로 움직인다
        lambda p: f"{p['time']}에 {p['place_over']} {p['colour']} {p['shape']} {particle(p['count'], '이/가')} "
        f"{p['toward']} 움직인다",
        # 빨간 공 두 개가 밤의 바다에서 오른쪽으로 이동한다
        lambda p: f"{p['colour']} {p['shape']} {particle(p['count'], '이/가')} {p['time']}의 {p['place']}에서 "
        f"{p['toward']} 이동한다",
        # 바다를 배경으로 빨간색 공 두 개가 밤에 오른쪽으로 움직인다
        lambda p: f"{particle(p['place'], '을/를')} 배경으로 {p['colour_noun']} {p['shape']} "
        f"{particle(p['count'], '이/가')} {p['time']}에 {p['toward']} 움직인다",
        # 오른쪽으로 움직이는 빨간 공 두 개, 밤의 바다
        lambda p: f"{p['toward']} 움직이는 {p['colour']} {p['shape']} {p['count']}, {p['time']}의 {p['place']}",
        # 밤에 바다 위에서 빨간 공이 두 개 오른쪽으로 지나간다
        lambda p: f"{p['time']}에 {p['place_at']} {p['colour']} {particle(p['shape'], '이/가')} {p['count']} "
        f"{p['passes']}",
        # 두 개의 빨간색 공이 바다 위에서 오른쪽으로 이동하는 밤 장면
        lambda p: f"{p['count']}의 {p['colour_noun']} {particle(p['shape'], '이/가')} {p['place_at']} "
        f"{p['toward']} 이동하는 {p['time']} 장면",
    ),
    "en": (
        # at night two red balls move right over the sea
        lambda p: f"{p['time_at']} {p['count']} {p['colour']} {p['shape']} move{p['s']} {p['dir']} {p['place_over']}",
        # two red balls moving right over the sea at night
        lambda p: f"{p['count']} {p['colour']} {p['shape']} moving {p['dir']} {p['place_over']} {p['time_at']}",
        # a night sea scene with two red balls moving rightward
        lambda p: f"a {p['time_adj']} {p['place']} scene with {p['count']} {p['colour']} {p['shape']} "
        f"moving {p['ward']}",
        # the sea at night: two red balls go right
        lambda p: f"the {p['place']} {p['time_at']}: {p['count']} {p['colour']} {p['shape']} "
        f"go{'es' if p['s'] else ''} {p['dir']}",
        # two red balls drift rightward across the sea at night
        lambda p: f"{p['count']} {p['colour']} {p['shape']} drift{p['s']} {p['ward']} across the {p['place']} "
        f"{p['time_at']}",
        # two red balls head right in a night shot of the sea
        lambda p: f"{p['count']} {p['colour']} {p['shape']} head{p['s']} {p['dir']} in a {p['time_adj']} shot of "
        f"the {p['place']}",
    ),
}
_PARTS = {"ko": _ko_parts, "en": _en_parts}

#: Template ids per language, e.g. "ko-3"; the last `HELD_OUT_PER_LANGUAGE` never caption training clips.
HELD_OUT_PER_LANGUAGE = 2
TEMPLATE_IDS = {lang: tuple(f"{lang}-{i}" for i in range(len(t))) for lang, t in _TEMPLATES.items()}
TRAIN_TEMPLATES = {lang: ids[:-HELD_OUT_PER_LANGUAGE] for lang, ids in TEMPLATE_IDS.items()}
HELD_OUT_TEMPLATES = {lang: ids[-HELD_OUT_PER_LANGUAGE:] for lang, ids in TEMPLATE_IDS.items()}


def caption(attributes: Attributes, template_id: str) -> str:
    """The caption template ``template_id`` (e.g. "ko-3") gives for a scene."""
    language, _, index = template_id.partition("-")
    if language not in _TEMPLATES or not index.isdigit() or int(index) >= len(_TEMPLATES[language]):
        raise ValueError(f"unknown caption template {template_id!r}")
    text = _TEMPLATES[language][int(index)](_PARTS[language](attributes))
    if language == "ko" and len(text) > MAX_KO_CHARS:
        raise ValueError(f"Korean caption over {MAX_KO_CHARS} characters: {text!r}")
    return text
