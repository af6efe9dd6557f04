"""The errors the plugin reports: the message is the one line the user reads, then it exits with status 1."""


class PluginError(Exception):
    pass


class ApiError(PluginError):
    """The API server answered with an error status; the message is its own (Status.message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
