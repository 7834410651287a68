"""E-mail addresses: the rules, and the fast path against email-validator on every value (differential)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.normalise.emails import normalise_email, normalise_email_reference, read_email, read_email_reference


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jan@example.nl", "jan@example.nl"),
        ("  Jan.de.Vries@Example.NL ", "jan.de.vries@example.nl"),
        ("info+dms@garage-dupont.be", "info+dms@garage-dupont.be"),
        ("anna@BÜCHER.de", "anna@bücher.de"),
        ("anna@xn--bcher-kva.de", "anna@bücher.de"),
    ],
)
def test_valid_addresses_are_lowercased_and_idn_normalised(raw: str, expected: str) -> None:
    assert normalise_email(raw)[0] == expected


@pytest.mark.parametrize("raw", ["luc@dupont", "jan@@example.nl", "jan..de@example.nl", "jan@example.test", "a@b.c1"])
def test_invalid_addresses_become_null_with_a_note(raw: str) -> None:
    value, fixes = normalise_email(raw)
    assert value is None
    assert fixes[-1] == ("email", "rejected")


@pytest.mark.parametrize("raw", ["", "-", "n.v.t.", "geen", "onbekend", "unknown"])
def test_placeholders(raw: str) -> None:
    assert normalise_email(raw) == (None, (("placeholder", "nulled"),))


_LOCAL = "abcxyz0189._+-%!#é"
_LABELS = ("example", "ziggo", "kpn-mail", "xn--bcher-kva", "bücher", "a", "ab--cd", "-x", "x-", "123", "MAIL", "")
_TLDS = ("nl", "be", "com", "test", "local", "arpa", "onion", "invalid", "1", "c", "x-y", "xn--p1ai", "рф", "")


def _address(r: random.Random) -> str:
    local = "".join(r.choice(_LOCAL) for _ in range(r.randint(0, 12)))
    labels = [r.choice(_LABELS) for _ in range(r.randint(0, 3))]
    domain = ".".join([*labels, r.choice(_TLDS)])
    return r.choice(("{l}@{d}", "{l}@{d}", " {l}@{d} ", "{l}{d}", "{l}@@{d}", "{l}@{d}.")).format(l=local, d=domain)


CORPUS = [_address(random.Random(seed)) for seed in range(10_000)]


def test_differential_on_a_large_generated_corpus() -> None:
    assert [raw for raw in CORPUS if normalise_email(raw) != normalise_email_reference(raw)] == []
    assert sum(normalise_email(raw)[0] is not None for raw in CORPUS) > 500  # valid paths are exercised too


@given(st.emails())
def test_differential_on_hypothesis_emails(raw: str) -> None:
    assert normalise_email(raw) == normalise_email_reference(raw)


@given(st.text())
def test_no_exception_on_any_string(raw: str) -> None:
    normalise_email(raw)


@given(st.one_of(st.emails(), st.sampled_from(CORPUS)))
def test_idempotent(raw: str) -> None:
    once, _ = normalise_email(raw)
    assert normalise_email(once) == (once, ())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A comma or semicolon typed for the dot: the rest is somebody else's address, so nothing is read.
        ("jan,jansen@example.nl", (None, (("email", "rejected"),), None)),
        ("Jan;Jansen@Example.nl", (None, (("email", "rejected"),), None)),
        ("jan,jansen@example.nl piet@example.nl", ("piet@example.nl", (("email", "text_removed"),), None)),
        # A list, a label, a name with a space: read as before.
        ("jan@example.nl,piet@example.nl", ("jan@example.nl", (), "piet@example.nl")),
        ("e-mail:jan@example.nl", ("jan@example.nl", (("email", "text_removed"),), None)),
        ("Jansen, jan@example.nl", ("jan@example.nl", (("email", "text_removed"),), None)),
    ],
)
def test_a_word_glued_to_an_address_by_a_separator_is_no_address(
    value: str, expected: tuple[str | None, tuple[tuple[str, str], ...], str | None]
) -> None:
    assert read_email(value) == expected
    assert read_email_reference(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jan @ example.nl", ("jan@example.nl", (("email", "spaces_removed"),), None)),
        ("jan@example .nl", ("jan@example.nl", (("email", "spaces_removed"),), None)),
        ("JAN @EXAMPLE.NL", ("jan@example.nl", (("email", "spaces_removed"), ("email", "lowercased")), None)),
        ("geen @ example.nl", (None, (("placeholder", "nulled"),), None)),
        # More than the address: a name, or a word after it, is not part of it.
        ("Jan Jansen @ example.nl", (None, (("email", "rejected"),), None)),
        ("jan @ example.nl piet", (None, (("email", "rejected"),), None)),
    ],
)
def test_spaces_next_to_the_at_sign_or_a_dot_are_removed_when_the_field_is_one_address(
    value: str, expected: tuple[str | None, tuple[tuple[str, str], ...], str | None]
) -> None:
    assert read_email(value) == expected
    assert read_email_reference(value) == expected
