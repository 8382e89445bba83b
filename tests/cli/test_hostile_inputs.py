"""A bounded adversarial sweep: hostile text at the most exposed places converts cleanly or fails cleanly.

The full sweep is ``python -m bench.adversarial``; this runs its in-process part on the places an
attacker reaches most easily, with the first payload of each family (the second for shell).
"""

from __future__ import annotations

import sys

import pytest

from helpers import REPO

if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench import adversarial  # noqa: E402

PLACES = ["parameter value", "description", "step name", "package tag", "env tag value", "volume",
          "extra_packages", "pip_index_urls", "string in a cell"]
PAYLOADS = {family: values[:1] + (values[1:4] if family in ("shell", "newlines", "control") else [])
            for family, values in adversarial.PAYLOADS.items()}


@pytest.fixture(scope="module")
def outcomes():
    return adversarial.sweep(PAYLOADS, PLACES)


@pytest.mark.parametrize("place", PLACES)
def test_no_payload_escapes_or_crashes(outcomes, place):
    mine = [o for o in outcomes if o.placement == place]
    assert mine
    bad = [(o.family, o.payload[:40], o.status, o.escape, o.detail[:200]) for o in mine
           if o.escape or o.status not in ("converted", "clean")]
    assert bad == []


def test_values_that_are_data_are_converted_not_refused(outcomes):
    # A string parameter or a description may hold anything: it is data, never refused.
    for place in ("parameter value", "description", "string in a cell"):
        assert {o.status for o in outcomes if o.placement == place} == {"converted"}, place


def test_shell_payloads_in_install_settings_are_refused(outcomes):
    refused = [o for o in outcomes if o.family == "shell" and o.placement in ("package tag", "extra_packages",
                                                                              "pip_index_urls")]
    assert refused and {o.status for o in refused} == {"clean"}
