"""Mirror of pyrep/errors.py (the same exception classes)."""


class PyRepError(Exception):
    pass


class WrongObjectTypeError(Exception):
    pass


class ObjectAlreadyRemovedError(Exception):
    pass


class ObjectIsNotModelError(Exception):
    pass


class ConfigurationError(Exception):
    pass


class ConfigurationPathError(Exception):
    pass


class GripperError(Exception):
    pass


class IKError(Exception):
    pass
