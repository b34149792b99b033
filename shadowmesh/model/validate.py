"""Value checks with Istio's and Kubernetes' wording. Each returns an error message, or None.

Istio's own labels accept upper case (``labels.IsDNS1123Label``); Kubernetes object names and
namespaces do not. Both are kept apart here so each caller says which rule it follows.
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction

_K8S_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_ISTIO_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_K8S_LABEL_RE = re.compile(_K8S_LABEL)
_ISTIO_LABEL_RE = re.compile(_ISTIO_LABEL)
_WILDCARD_LABEL_RE = re.compile(rf"\*|(?:\*|\*-)?{_ISTIO_LABEL}")
_SUBDOMAIN_RE = re.compile(rf"{_K8S_LABEL}(?:\.{_K8S_LABEL})*")
_DNS1035_RE = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_IANA_SVC_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_NAME_RE = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_HEADER_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_K8S_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)


def k8s_label(value: str) -> str | None:
    """A Kubernetes DNS-1123 label: namespaces, Service port names."""
    if len(value) > 63:
        return f'invalid value "{value}": must be no more than 63 characters'
    if not _K8S_LABEL_RE.fullmatch(value):
        return f'invalid value "{value}": {_K8S_LABEL_RULE} (e.g. "my-name")'
    return None


def k8s_subdomain(value: str) -> str | None:
    """A Kubernetes DNS-1123 subdomain: the names of most objects."""
    if len(value) > 253:
        return f'invalid value "{value}": must be no more than 253 characters'
    if not _SUBDOMAIN_RE.fullmatch(value):
        return f'invalid value "{value}": {_SUBDOMAIN_RULE} (e.g. "example.com")'
    return None


def dns1035_label(value: str) -> str | None:
    """A Service name: it becomes the first label of ``name.ns.svc.cluster.local``."""
    if len(value) > 63:
        return f'invalid value "{value}": must be no more than 63 characters'
    if not _DNS1035_RE.fullmatch(value):
        return (
            f'invalid value "{value}": a DNS-1035 label must consist of lower case alphanumeric '
            "characters or '-', start with an alphabetic character, and end with an "
            'alphanumeric character (e.g. "my-name")'
        )
    return None


def istio_label(value: str) -> bool:
    return len(value) <= 63 and _ISTIO_LABEL_RE.fullmatch(value) is not None


def subset_name(value: str) -> str | None:
    if not value:
        return "subset name cannot be empty"
    if not istio_label(value):
        return f"subset name is invalid: {value}"
    return None


def port_name(value: str) -> str | None:
    """A WorkloadEntry port name (Istio's ``ValidatePortName``)."""
    return None if istio_label(value) else f"invalid port name: {value}"


def port_number(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"port number {value} must be in the range 1..65535"
    return None


def iana_svc_name(value: str) -> str | None:
    """A named ``targetPort``: Kubernetes' IANA_SVC_NAME rule."""
    if len(value) > 15:
        return f'invalid value "{value}": must be no more than 15 characters'
    if not _IANA_SVC_NAME_RE.fullmatch(value):
        return (
            f'invalid value "{value}": must contain only alpha-numeric characters (a-z, 0-9), '
            "and hyphens (-), and must start and end with an alphanumeric character"
        )
    if "--" in value:
        return f'invalid value "{value}": must not contain consecutive hyphens'
    if not any(c.isalpha() for c in value):
        return f'invalid value "{value}": must contain at least one letter (a-z)'
    return None


def _domain_preconditions(domain: str) -> str | None:
    if not domain:
        return "empty domain name not allowed"
    if len(domain) > 255:
        return f'domain name "{domain}" too long (max 255)'
    return None


def _dns1123_labels(domain: str, whole: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return (
            f'domain name "{whole}" invalid (top level domain "{parts[-1]}" cannot be all-numeric)'
        )
    for index, label in enumerate(parts):
        # A trailing dot (``istio.io.``) is allowed: it makes the name unambiguous.
        if index == len(parts) - 1 and label == "":
            return None
        if not istio_label(label):
            return f'domain name "{whole}" invalid (label "{label}" invalid)'
    return None


def wildcard_domain(domain: str) -> str | None:
    """Istio's ``ValidateWildcardDomain``: a DNS name whose first label may be ``*``/``*-x``."""
    problem = _domain_preconditions(domain)
    if problem:
        return problem
    first, _, rest = domain.partition(".")
    if len(first) > 63 or not _WILDCARD_LABEL_RE.fullmatch(first):
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    return _dns1123_labels(rest, domain) if rest else None


def fqdn(domain: str) -> str | None:
    """Istio's ``ValidateFQDN``: a DNS name with no wildcard."""
    return _domain_preconditions(domain) or _dns1123_labels(domain, domain)


def ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_subnet(subnet: str) -> str | None:
    """Istio's ``ValidateIPSubnet``: a CIDR block (one ``/``) or an IP address."""
    if subnet.count("/") == 1:
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            return f"{subnet} is not a valid CIDR block"
        return None
    return None if ip_address(subnet) else f"{subnet} is not a valid IP"


def label_key(key: str) -> str | None:
    """A Kubernetes qualified name, as label and selector keys must be."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or k8s_subdomain(prefix)):
        return f'invalid label key "{key}": the prefix must be a DNS-1123 subdomain'
    if not name or len(name) > 63 or not _LABEL_NAME_RE.fullmatch(name):
        return (
            f'invalid label key "{key}": a name must be 63 characters or less, consist of '
            "alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric "
            "character"
        )
    return None


def label_value(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME_RE.fullmatch(value)):
        return (
            f'invalid label value "{value}": must be 63 characters or less, empty or consist of '
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric "
            "character"
        )
    return None


def header_name(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if not _HEADER_TOKEN_RE.fullmatch(name):
        return f"header name {name} is not a valid header"
    return None


_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
_JWT_CLAIM = "@request.auth.claims"


def jwt_claim_route(name: str) -> bool:
    """Istio's ``jwt.ToRoutingClaim(name).Match``: ``@request.auth.claims.a`` or ``...[a][b]``."""
    if not name.lower().startswith(_JWT_CLAIM):
        return False
    rest = name[len(_JWT_CLAIM) :]
    dotted = rest.startswith(".") and len(rest) > 1
    return dotted or rest.startswith("[") and rest.endswith("]") and len(rest) > 2


def match_header_name(name: str) -> str | None:
    """Istio's ``ValidateHTTPHeaderNameOrJwtClaimRoute``: a match's header name."""
    if not name:
        return "header name cannot be empty"
    if jwt_claim_route(name) or name in _PSEUDO_HEADERS:
        return None
    if not _HEADER_TOKEN_RE.fullmatch(name):
        return f"header name {name} is not a valid header name"
    return None


# Go's time.ParseDuration units, in nanoseconds.
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART_RE = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> Fraction:
    """Go's duration syntax (``5s``, ``1.5s``, ``300ms``, ``1m30s``) to exact seconds.

    Istio reads ``timeout`` as a protobuf Duration (``"1.5s"``); users also write Go's forms,
    which Kubernetes' CRD validation accepts, so both are read. Raises ValueError with the
    message to show.
    """
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return Fraction(0)
    position, total = 0, Fraction(0)
    while position < len(body):
        part = _DURATION_PART_RE.match(body, position)
        if part is None:
            raise ValueError(f'invalid duration "{text}": use a number with a unit, like "5s"')
        total += Fraction(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    if not body:
        raise ValueError(f'invalid duration "{text}": use a number with a unit, like "5s"')
    return (-total if text.startswith("-") else total) / 10**9


def duration(text: str) -> tuple[float | None, str | None]:
    """A route ``timeout``: (seconds, None) or (None, error), by Istio's ``ValidateDuration``."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        return None, str(exc)
    if seconds < Fraction(1, 1000):
        return None, "duration must be greater than 1ms"
    if (seconds * 1000).denominator != 1:
        return None, "only durations to ms precision are supported"
    return float(seconds), None


def regex(pattern: str, where: str) -> str | None:
    """Istio's ``validateStringMatchRegexp``: non-empty, at most 1024 long, compiles.

    Envoy compiles with RE2; Python's ``re`` is a superset, so the constructs RE2 lacks
    (lookaround, backreferences, atomic groups, possessive quantifiers) are refused first.
    """
    if not pattern:
        return f'"{where}": regex string match should not be empty'
    if len(pattern) > 1024:
        return f'"{where}": regex is too large, max length allowed is 1024'
    unsupported = _re2_unsupported(pattern)
    if unsupported:
        return f'"{where}": regex is invalid: {unsupported} is not supported by RE2{_RE2_HINT}'
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f'"{where}": regex is invalid: {exc}{_RE2_HINT}'
    return None


_RE2_HINT = "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
_RE2_GROUPS = {"(?=": "lookahead", "(?!": "lookahead", "(?<=": "lookbehind"}
_RE2_GROUPS |= {"(?<!": "lookbehind", "(?>": "an atomic group", "(?P=": "a backreference"}


def _re2_unsupported(pattern: str) -> str | None:
    """The first construct Python's ``re`` accepts and RE2 refuses, skipping escapes and sets."""
    index, in_set = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if not in_set and pattern[index + 1 : index + 2].isdigit():
                if pattern[index + 1] != "0":
                    return "a backreference"
            index += 2
            continue
        if in_set:
            in_set = char != "]"
        elif char == "[":
            in_set = True
            # A ']' right after '[' or '[^' is a literal member, not the end of the set.
            index += 2 if pattern[index + 1 : index + 2] == "]" else 1
            if pattern[index : index + 2] == "^]":
                index += 2
            continue
        elif char == "(":
            for opener, name in _RE2_GROUPS.items():
                if pattern.startswith(opener, index):
                    return name
        elif char in "*+?}" and pattern[index + 1 : index + 2] == "+":
            return "a possessive quantifier"
        index += 1
    return None
