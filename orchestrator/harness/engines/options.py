"""One strict parser for every engine's options (HarnessSpec.engine_options: strings).

Each engine declares its options as a frozen dataclass derived from `EngineOptions`, with typed fields and
defaults; `parse_engine_options` turns the spec's strings into it. An unknown option or a bad value is a
ConfigError of one sentence naming the valid options or the accepted values, so a misspelt option never
passes silently. Options every engine accepts are declared once, on `EngineOptions` itself.

Field types the parser understands (an empty string means "not given": the default):
    str, int, bool (1/0, true/false, yes/no, on/off), a Literal of strings (case-insensitive),
    int | Literal[...] (a word or a whole number, e.g. instances=auto|N), tuple[int, ...] (comma-separated),
    and any of these | None.
Bounds on integers: `option(default, minimum=..., maximum=...)`.

An option given where the other options make the engine ignore it (an int8 setting at precision=bf16,
`pad_to` with length buckets) is refused too, naming why: a setting that silently does nothing reads, in
run.json and a tune table, as if it had been measured. An engine names them in `EngineOptions.unused`;
`tune`, whose sweeps cross precisions with such options, drops them where they do nothing (`unused_options`
says which) instead.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from orchestrator.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# The numeric precision an engine runs the model in. auto: the engine's own default for the model as given
# (fp32 weights stay fp32, a quantized model stays int8; TensorRT builds fp16). Each engine accepts a subset.
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
PRECISION_OPTION = "precision"  # the option's name, the same for every engine (EngineOptions.precision)


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Options every engine accepts, declared once here; an engine declares `supported_precisions`."""

    precision: Precision = "auto"

    # The precisions this engine can run; another one is a ConfigError naming these.
    supported_precisions: ClassVar[tuple[str, ...]] = ("auto",)

    def unused(self) -> dict[str, str]:
        """{option: why it does nothing with these values of the others}, e.g. {"pad_to": "shapes=buckets pads
        to its buckets"}; a why ends with what to do instead. Defaults are never reported: only a given
        option is refused."""
        return {}

    def native_bf16(self) -> dict[str, str]:
        """{setting: what to do instead} for each of these options that asks for bf16 arithmetic on the CPU
        (refused where the CPU has no native bf16: harness/cpu.py bf16_refusal). The host checks them before
        any run directory, the engine again as it starts (a Ray node's CPU may differ from the driver's)."""
        if self.precision == "bf16":
            return {"precision=bf16": "use --engine-option precision=fp32"}
        return {}


OptionsT = TypeVar("OptionsT", bound=EngineOptions)


def option(default: Any, *, minimum: int | None = None, maximum: int | None = None) -> Any:
    """A field with a default and, for integers, the range the parser accepts."""
    return dataclasses.field(default=default, metadata={"minimum": minimum, "maximum": maximum})


def option_names(cls: type[EngineOptions]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def parse_engine_options(cls: type[OptionsT], raw: Mapping[str, str], engine: str) -> OptionsT:
    """`raw` (the spec's strings) as `cls`; a ConfigError for an unknown option, a bad value, or an option the
    others make the engine ignore."""
    parsed = _parse(cls, raw, engine)
    for sentence in _unused_given(parsed, raw, engine).values():
        raise ConfigError(sentence)
    return parsed


def unused_options(cls: type[EngineOptions], raw: Mapping[str, str], engine: str) -> dict[str, str]:
    """{each option raw gives that the others make the engine ignore: the sentence refusing it}; a ConfigError
    for what else parse_engine_options refuses."""
    return _unused_given(_parse(cls, raw, engine), raw, engine)


def _unused_given(parsed: EngineOptions, raw: Mapping[str, str], engine: str) -> dict[str, str]:
    reasons = parsed.unused()
    given = sorted(name for name, text in raw.items() if text is not None and str(text).strip())
    return {
        name: f"{engine} engine option {name}={str(raw[name]).strip()} does nothing here: {reasons[name]}"
        for name in given
        if name in reasons
    }


def _parse(cls: type[OptionsT], raw: Mapping[str, str], engine: str) -> OptionsT:
    names = option_names(cls)
    unknown = sorted(set(raw) - set(names))
    if unknown:
        valid = ", ".join(names) if names else "none"
        raise ConfigError(f"unknown {engine} engine option {unknown[0]!r}; the valid ones are {valid}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        text = raw.get(f.name)
        if text is None or not str(text).strip():
            continue  # not given: the default
        values[f.name] = _convert(engine, f.name, str(text).strip(), hints[f.name], f.metadata, f.default)
    parsed = cls(**values)
    if parsed.precision not in cls.supported_precisions:
        raise ConfigError(
            f"the {engine} engine runs precision {', '.join(cls.supported_precisions)}, not {parsed.precision!r}; "
            "pass one of them with --engine-option precision=..."
        )
    return parsed


def _convert(engine: str, name: str, text: str, kind: Any, meta: Mapping[str, Any], default: Any) -> Any:
    words, number, other = _parts(kind)
    if words and text.lower() in words:
        return text.lower()
    if number:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is not None and _in_range(value, meta):
            return value
    if other is not None:
        converted = _convert_other(text, other)
        if converted is not None:
            return converted
    raise ConfigError(
        f"{engine} engine option {name}={text!r} is not {_accepted(words, number, other, meta)}; "
        f"pass {_example(words, number, other, meta, default)}"
    )


def _parts(kind: Any) -> tuple[tuple[str, ...], bool, Any]:
    """(the Literal words, whether a whole number is accepted, any other type) of a field's annotation."""
    members = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    words: tuple[str, ...] = ()
    number = False
    other: Any = None
    for member in members:
        if member is type(None):
            continue
        if get_origin(member) is Literal:
            words += tuple(str(w) for w in get_args(member))
        elif member is int:
            number = True
        elif member in (str, bool) or get_origin(member) is tuple:
            other = member
        else:
            raise TypeError(f"engine option type {member!r} is not supported by parse_engine_options")
    return words, number, other


def _in_range(value: int, meta: Mapping[str, Any]) -> bool:
    low, high = meta.get("minimum"), meta.get("maximum")
    return (low is None or value >= low) and (high is None or value <= high)


def _convert_other(text: str, other: Any) -> Any:
    if other is str:
        return text
    if other is bool:
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    try:  # tuple[int, ...]
        return tuple(int(part) for part in text.split(",") if part.strip()) or None
    except ValueError:
        return None


def _range_text(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def _accepted(words: tuple[str, ...], number: bool, other: Any, meta: Mapping[str, Any]) -> str:
    if other is bool:
        return "a yes/no value"
    if other is not None and other is not str:
        return "a comma-separated list of whole numbers"
    whole = "a whole number" + _range_text(meta)
    if not words:
        return whole
    listed = ", ".join(words)
    return f"{listed} or {whole}" if number else f"one of {listed}"


def _example(words: tuple[str, ...], number: bool, other: Any, meta: Mapping[str, Any], default: Any) -> str:
    if other is bool:
        return "1, 0, true, false, yes, no, on or off"
    if other is not None and other is not str:
        return "e.g. 128,256,384"
    if words and not number:
        return "one of them"
    low = meta.get("minimum")
    if isinstance(default, int) and not isinstance(default, bool):
        number_example = default
    else:
        number_example = low if low is not None else 1
    return "e.g. " + " or ".join([str(number_example), *words])
