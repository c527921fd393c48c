"""The engine's error types. Each says what is wrong in words a user can act on."""


class ThawError(Exception):
    """Base class of every error the engine raises on purpose."""


class BadInputError(ThawError):
    """The user's input (recipe, path, data) cannot be used. The CLI exits with code 2."""


class RecipeError(BadInputError):
    """A recipe field is invalid. `field` is its dotted path, e.g. ``phases[1].groups[0].lr``."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"recipe field '{field}': {message}")


class WeightsUnavailableError(ThawError):
    """Pretrained weights are neither cached nor downloadable."""


class GroupAssignmentError(BadInputError):
    """Parameter groups do not cover every trainable parameter exactly once."""
