"""The FER2013 label order, defined once for the whole project.

The integer codes are the ones in the original challenge CSV (``emotion`` column).
Folder names from other layouts map onto them through :func:`label_from_name`.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
UNCERTAIN = "uncertain"  # the label of a face whose confidence is below the chosen threshold
DEFAULT_THRESHOLD = 0.4  # the confidence below which the app and the CLIs call a face uncertain

# Names other data sets use for the same classes (AffectNet, CK+, RAF-DB style folders).
EMOTION_ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}

# One colour per emotion, as RGB (fer_core.draw converts to BGR for OpenCV).
EMOTION_COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "angry": (230, 57, 70),
    "disgust": (106, 153, 78),
    "fear": (131, 56, 236),
    "happy": (255, 190, 11),
    "sad": (58, 134, 255),
    "surprise": (251, 86, 7),
    "neutral": (141, 153, 174),
}
UNCERTAIN_COLOR_RGB = (150, 150, 150)  # a face below the threshold, and any label not in the palette
# The app theme's primaryColor (.streamlit/config.toml) is this emotion's colour; a test keeps them equal.
THEME_EMOTION = "happy"


def label_color_rgb(label: str) -> tuple[int, int, int]:
    """The colour of an emotion (grey for ``"uncertain"`` or anything unknown)."""
    return EMOTION_COLORS_RGB.get(label, UNCERTAIN_COLOR_RGB)


def rgb_css(rgb: tuple[int, int, int], alpha: float = 1.0) -> str:
    """``rgba(r, g, b, a)`` for charts and HTML."""
    red, green, blue = rgb
    return f"rgba({red}, {green}, {blue}, {alpha})"


def rgb_hex(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb``, as Streamlit's theme settings take a colour."""
    red, green, blue = rgb
    return f"#{red:02x}{green:02x}{blue:02x}"


def label_from_name(name: str) -> int | None:
    """Map a class folder name to its label code, or ``None`` when it is not one of ours.

    Matching is case-insensitive and accepts the aliases in :data:`EMOTION_ALIASES`;
    classes FER2013 does not have (``contempt``) return ``None`` so callers can report them.
    """
    key = name.strip().lower()
    key = EMOTION_ALIASES.get(key, key)
    try:
        return EMOTIONS.index(key)
    except ValueError:
        return None


def label_text(label: str, emotion: str, confidence: float) -> str:
    """How a face's result reads everywhere (pages, drawn labels, CLIs): ``"happy 87%"``, or
    ``"uncertain (happy 34%)"`` when ``label`` is "uncertain" (the top emotion below the threshold)."""
    if label == UNCERTAIN:
        return f"{UNCERTAIN} ({emotion} {confidence:.0%})"
    return f"{emotion} {confidence:.0%}"
