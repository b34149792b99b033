"""HTTP's wire vocabulary, protocol-neutral where it can be: request heads and their checks,
response heads, the body buffer, and the ports between codecs and streams (``ports``)."""
