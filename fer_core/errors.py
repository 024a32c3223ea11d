"""Errors the core raises for bad input. Each message names the problem in words a user can act on."""


class FerError(ValueError):
    """Base class of every input error raised by fer_core."""


class DatasetError(FerError):
    """A data set location or file cannot be used (missing path, wrong layout, bad CSV header)."""


class InvalidImageError(FerError):
    """Bytes or a file that cannot be decoded as an image, or an image too large to process."""


class ModelLoadError(FerError):
    """A model file that is missing, unreadable or not a 7-class 48x48 FER model."""


class InvalidVideoError(FerError):
    """A file that cannot be read as a video: corrupt, no video stream, or a codec this build cannot decode."""


class FileWriteError(OSError):
    """A file that could not be written, named as the user knows it (never its temporary name); the
    message says where and why. Not an input error: the place cannot take the file."""

    def __str__(self) -> str:
        return str(self.strerror)
