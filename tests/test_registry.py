"""One registry for every extension point (splitbed.registry): a second entry of one name is refused
when it is made, and a misspelt name is a one-line error with the nearest known name."""

import pytest

from splitbed.aglop.online import POLICIES
from splitbed.codecs import REGISTRY
from splitbed.codecs.base import register
from splitbed.errors import UserError
from splitbed.models.registry import BUILTIN
from splitbed.network.topology import KINDS
from splitbed.network.traces import READERS
from splitbed.registry import Registry


def test_a_name_registered_twice_is_refused_at_once():
    registry = Registry("widget", {"a": 1})
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.add("a", 2)
    assert registry["a"] == 1 and list(registry) == ["a"]


def test_a_codec_with_a_taken_name_or_wire_id_is_refused():
    class Again(REGISTRY["jpeg"]):
        pass
    with pytest.raises(ValueError, match="codec id"):
        register(Again)
    Again.codec_id = 250
    with pytest.raises(ValueError, match="'jpeg' is registered twice"):
        register(Again)


@pytest.mark.parametrize("registry, wrong, nearest", [(REGISTRY, "dics", "disc"), (BUILTIN, "fmnist", "fmnist_cnn"),
                                                      (POLICIES, "aglp", "aglop"), (READERS, "mahimahy", "mahimahi"),
                                                      (KINDS, "stra", "star")])
def test_every_extension_point_names_the_nearest_on_a_miss(registry, wrong, nearest):
    with pytest.raises(UserError) as caught:
        registry.lookup(wrong, where="scenario.yaml:3")
    text = caught.value.render()
    assert text.startswith("scenario.yaml:3: unknown ") and f"did you mean {nearest!r}?" in text
    assert "\n" not in text
