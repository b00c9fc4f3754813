"""botocore's own SQS service model: parameter validation and modelled exception classes.

Loaded lazily, once per process, from the botocore data files installed with botocore.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from botocore.errorfactory import ClientExceptionsFactory  # type: ignore[import-untyped,unused-ignore]
from botocore.exceptions import ClientError, ParamValidationError  # type: ignore[import-untyped,unused-ignore]
from botocore.loaders import Loader  # type: ignore[import-untyped,unused-ignore]
from botocore.model import OperationModel, ServiceModel, StructureShape  # type: ignore[import-untyped,unused-ignore]
from botocore.validate import ParamValidator  # type: ignore[import-untyped,unused-ignore]

_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What the stub's fast path needs to know about one operation's input."""

    name: str
    model: OperationModel
    members: frozenset[str]
    required: frozenset[str]
    simple_types: dict[str, tuple[type, ...]]
    string_lists: frozenset[str]


@functools.cache
def service_model() -> ServiceModel:
    loader = Loader()
    data = loader.load_service_model("sqs", "service-2")
    return ServiceModel(data, service_name="sqs")


@functools.cache
def operation_spec(operation_name: str) -> OperationSpec:
    model = service_model().operation_model(operation_name)
    shape = model.input_shape
    assert isinstance(shape, StructureShape)
    simple: dict[str, tuple[type, ...]] = {}
    string_lists: set[str] = set()
    for name, member in shape.members.items():
        types = _SIMPLE_TYPES.get(member.type_name)
        if types is not None:
            simple[name] = types
        elif member.type_name == "list" and member.member.type_name == "string":
            string_lists.add(name)
    return OperationSpec(
        name=operation_name,
        model=model,
        members=frozenset(shape.members),
        required=frozenset(shape.required_members),
        simple_types=simple,
        string_lists=frozenset(string_lists),
    )


def validate_params(spec: OperationSpec, params: dict[str, Any]) -> None:
    """Raise botocore's ``ParamValidationError`` exactly where a botocore client would.

    Top-level names and scalar types are checked inline (the common, fast path); anything with
    nested structure, or anything suspicious, goes through botocore's own validator.
    """
    keys = params.keys()
    if keys <= spec.members and spec.required <= keys:
        simple = spec.simple_types
        for key, value in params.items():
            types = simple.get(key)
            # Exact types: a bool is not an integer here, as botocore's validator sees it.
            if types is None:
                if (
                    key in spec.string_lists
                    and type(value) in (list, tuple)
                    and all(type(item) is str for item in value)
                ):
                    continue
                break
            if type(value) not in types:
                break
        else:
            return
    report = ParamValidator().validate(params, spec.model.input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


@functools.cache
def _exceptions() -> Any:
    return ClientExceptionsFactory().create_client_exceptions(service_model())


def client_exceptions() -> Any:
    """The ``client.exceptions`` object a botocore SQS client has (``QueueDoesNotExist``...)."""
    return _exceptions()


def exception_class(shape: str) -> type[ClientError]:
    """The modelled ``ClientError`` subclass for an error shape, or ``ClientError`` itself."""
    cls: type[ClientError] = getattr(_exceptions(), shape, ClientError)
    return cls
