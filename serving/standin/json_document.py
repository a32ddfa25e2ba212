"""JSON documents read and quoted by the rules of RapidJSON, TF Serving's JSON library.

`json_tensor.cc` parses request bodies with RapidJSON (iterative, `NaN` and
`Infinity` allowed, stopping after the first complete value) and quotes
offending values in its messages with RapidJSON's PrettyWriter, cut after
256 bytes (`JsonValueToDebugString`). Python's decoder differs in each of
these, so this module bridges: an integer beyond 64 bits is a double, a
number beyond double range is refused, a `\\u` escape of half a surrogate
pair is refused (Python's decoder keeps it as a lone surrogate, which no
UTF-8 encoder takes), the parse messages are RapidJSON's (`error/en.h`),
and quoting is iterative so any nesting is safe.
"""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal

from serving.standin.dtypes import INT64_MIN, UINT64_MAX
from serving.standin.errors import ServingError, invalid_argument

_DEBUG_STRING_BYTES = 256  # json_tensor.cc: kMaxJsonDebugStringBytes

# RapidJSON's English messages (error/en.h) for the failures Python's decoder reports.
_PARSE_MESSAGES = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
    "Invalid control character at": "Invalid escape character in string.",
}


def utf8_bytes(text: str) -> bytes:
    """The bytes a parsed JSON string stands for. `parse_body` decodes the body with surrogateescape, so bytes that
    are not UTF-8 come back as they arrived (RapidJSON takes them as they are: TF Serving does not set
    kParseValidateEncodingFlag); the only other surrogates, unpaired `\\u` escapes, are refused at parse time."""
    return text.encode("utf-8", "surrogateescape")


def _byte_offset(text: str, offset: int) -> int:
    return len(utf8_bytes(text[:offset]))  # RapidJSON counts bytes


def _parse_failure(message: str, text: str, offset: int) -> ServingError:
    """json_tensor.cc: ParseJson's message for a RapidJSON parse error."""
    return invalid_argument(f"JSON Parse error: {message} at offset: {_byte_offset(text, offset)}")


# reader.h ParseStringToStream: a \u escape of a high surrogate must be followed by an escaped low one, and a low
# one may not stand alone; else kParseErrorStringUnicodeSurrogateInvalid at the first escape's backslash.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_SURROGATE_INVALID = "The surrogate pair in string is invalid."


def _unpaired_surrogate(text: str, end: int) -> int | None:
    """The position before `end` of the first escape RapidJSON refuses as an invalid surrogate pair, if any."""
    if not _SURROGATE_ESCAPE.search(text, 0, end):
        return None
    for string in _STRING.finditer(text, 0, end):
        escapes = _ESCAPE.finditer(string.group())
        for escape in escapes:
            code = int(escape.group(1), 16) if escape.group(1) else 0
            if not 0xD800 <= code <= 0xDFFF:
                continue
            low = next(escapes, None) if code <= 0xDBFF else None
            if (low is None or low.start() != escape.end() or not low.group(1)
                    or not 0xDC00 <= int(low.group(1), 16) <= 0xDFFF):
                return string.start() + escape.start()
    return None


class _NumberTooBig(ValueError):
    def __init__(self, literal: str):
        super().__init__(literal)
        self.literal = literal


def _double(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


def _integer(literal: str) -> int | float:
    """RapidJSON keeps integers of int64 or uint64 range; a longer one is read as a double."""
    if len(literal) <= 21:
        value = int(literal)
        if INT64_MIN <= value <= UINT64_MAX:
            return value
    return _double(literal)


class _UnpairedSurrogate(ValueError):
    def __init__(self, position: int):
        super().__init__(position)
        self.position = position


_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_double, parse_constant=_CONSTANTS.__getitem__)


def _parse_error(text: str, err: json.JSONDecodeError) -> ServingError:
    surrogate = _unpaired_surrogate(text, err.pos)
    if surrogate is not None:  # Python's decoder reads on past it; RapidJSON stops there
        return _parse_failure(_SURROGATE_INVALID, text, surrogate)
    message = _PARSE_MESSAGES.get(err.msg, "Invalid value.")
    offset = err.pos
    if err.msg == "Expecting ',' delimiter":
        before = text[:offset].rstrip()
        if before[-1:].isdigit() and text[offset:offset + 1] in (".", "e", "E"):
            message = "Miss fraction part in number." if text[offset] == "." else "Miss exponent in number."
            offset += 1
        else:
            message = ("Missing a comma or ']' after an array element." if _innermost(text, offset) == "["
                       else "Missing a comma or '}' after an object member.")
    elif err.msg == "Unterminated string starting at":
        offset = len(text)
    elif err.msg == "Expecting value" and text[offset:offset + 1] == "-":
        offset += 1  # reader.h ParseNumber has taken the minus sign when it finds no digit
    elif not text[:offset].strip(" \t\n\r") and text[offset:offset + 1] in ("", "\x00"):
        message = "The document is empty."  # reader.h Parse: nothing but whitespace before the end or a '\0'
    return _parse_failure(message, text, offset)


def _innermost(text: str, end: int) -> str:
    """The bracket of the innermost array or object open at `end` (only read for an error message)."""
    stack, in_string, escaped = [], False, False
    for char in text[:end]:
        if in_string:
            in_string, escaped = (not (char == '"' and not escaped)), (char == "\\" and not escaped)
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


# RapidJSON's kParseNanAndInfFlag reads NaN, -NaN, Inf, -Inf, Infinity and -Infinity; Python's decoder only
# NaN, Infinity and -Infinity. Strings are matched first so that their contents stay as they are.
_SPECIAL_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?Inf(?!inity)|-NaN')


def _spelled_for_python(match: re.Match) -> str:
    token = match.group()
    return token if token.startswith('"') else {"Inf": "Infinity", "-Inf": "-Infinity", "-NaN": "NaN"}[token]


def _decode(text: str):
    start = len(text) - len(text.lstrip(" \t\n\r"))
    # raw_decode stops after the first value, as RapidJSON's kParseStopWhenDoneFlag does.
    document, end = _DECODER.raw_decode(text, start)
    surrogate = _unpaired_surrogate(text, end)
    if surrogate is not None:
        raise _UnpairedSurrogate(surrogate)
    return document


def parse_body(body: bytes) -> dict:
    """The request's JSON object, or TF Serving's `JSON Parse error` (json_tensor.cc: ParseJson)."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    text = body.decode("utf-8", "surrogateescape").removeprefix("\ufeff")  # RapidJSON skips a UTF-8 BOM
    try:
        try:
            document = _decode(text)
        except json.JSONDecodeError:
            if "Inf" not in text and "NaN" not in text:
                raise
            text = _SPECIAL_NUMBER.sub(_spelled_for_python, text)  # only now: the rewrite reads every string
            document = _decode(text)
    except json.JSONDecodeError as err:
        raise _parse_error(text, err) from None
    except _UnpairedSurrogate as err:
        raise _parse_failure(_SURROGATE_INVALID, text, err.position) from None
    except _NumberTooBig as err:
        offset = max(text.find(err.literal), 0)
        raise invalid_argument(f"JSON Parse error: Number too big to be stored in double. at offset: {offset}") \
            from None
    except RecursionError:
        # RapidJSON parses iteratively and has no depth limit; Python's decoder has one. Deliberate
        # divergence: a document nested about a thousand levels deep is refused here, never a 500.
        raise invalid_argument("JSON Parse error: arrays or objects nested too deeply for the stand-in's "
                               "parser (about 1000 levels)") from None
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    return document


def format_error(value, *parts: str) -> ServingError:
    """json_tensor.cc: FormatError."""
    return invalid_argument(f"JSON Value: {debug_string(value)} {''.join(parts)}")


# --- JsonValueToDebugString: RapidJSON's PrettyWriter (4-space indent, arrays on one line), cut near 256 bytes.

def _number_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return rapidjson_double(value)


def rapidjson_double(value: float) -> str:
    """RapidJSON's Writer::Double (dtoa.h Prettify): shortest digits, `1.0` for whole numbers, `1e30` exponents."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return f"{sign}0.0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # the value is 0.<digits> × 10^point
    if exponent >= 0 and point <= 21:
        return f"{sign}{digits}{'0' * exponent}.0"
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    mantissa = digits if len(digits) == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{point - 1}"


def _string_text(value: str) -> str:
    """A JSON string as RapidJSON's Writer escapes it: text as is, control characters as \\u00XX in capitals."""
    quoted = json.dumps(utf8_bytes(value).decode("utf-8", "replace"), ensure_ascii=False)
    return _CONTROL_ESCAPE.sub(lambda match: match.group().upper().replace("\\U", "\\u"), quoted)


_CONTROL_ESCAPE = re.compile(r"\\u00[0-9a-f]{2}")


def debug_string(value) -> str:
    """json_tensor.cc: JsonValueToDebugString; iterative, so any nesting depth is safe."""
    out: list[str] = []
    size = 0
    # A stack of ("value", JSON value, indent level) and ("text", literal, level) still to write.
    events: list = [("value", value, 0)]
    while events and size < _DEBUG_STRING_BYTES:
        kind, item, level = events.pop()
        if kind == "text":
            piece = item
        elif isinstance(item, list):
            piece = "["
            children = [("value", child, level + 1) for child in item]
            tail = [("text", "]", level)]
            sequence = []
            for i, child in enumerate(children):
                if i:
                    sequence.append(("text", ", ", level))
                sequence.append(child)
            events.extend(reversed(sequence + tail))
        elif isinstance(item, dict):
            piece = "{"
            sequence = []
            for i, (key, child) in enumerate(item.items()):
                indent = "\n" + "    " * (level + 1)
                sequence.append(("text", ("," if i else "") + indent + _string_text(key) + ": ", level))
                sequence.append(("value", child, level + 1))
            if item:
                sequence.append(("text", "\n" + "    " * level, level))
            sequence.append(("text", "}", level))
            events.extend(reversed(sequence))
        elif isinstance(item, str):
            piece = _string_text(item)
        elif item is None:
            piece = "null"
        else:
            piece = _number_text(item)
        out.append(piece)
        size += len(utf8_bytes(piece))
    return "".join(out)


def json_type(value) -> str:
    """json_tensor.cc: JsonTypeString."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"
