import pytest

from featprep.errors import RecipeError
from featprep.recipe import load_recipe, parse_override


def test_corpus_recipe_is_laid_over_common():
    recipe = load_recipe("vctk")
    assert recipe["corpus"] == "vctk"
    assert recipe["discover"]["exclude_speakers"] == ["p315"]
    assert recipe["trim"]["top_db"] == 40.0
    assert load_recipe("cmu_arctic")["speakers"]["gender"]["slt"] == "F"


def test_overrides_are_typed_and_layered(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[trim]\ntop_db = 30\n[discover]\nmic = "mic2"\n')
    recipe = load_recipe("vctk", user, ["trim.top_db=35", "split.modeling_per_gender=20"])
    assert recipe["trim"]["top_db"] == 35
    assert recipe["discover"]["mic"] == "mic2"
    assert recipe["split"]["modeling_per_gender"] == 20


def test_open_table_takes_new_keys():
    recipe = load_recipe("cmu_arctic", overrides=["speakers.gender.xyz=F"])
    assert recipe["speakers"]["gender"]["xyz"] == "F"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trim.topdb=3", "unknown recipe key 'trim.topdb'"),
        ("nope.x=1", "unknown recipe key 'nope.x'"),
        ("trim.top_db=loud", "expects a value like 40.0"),
        ("discover.mic_fallback=1", "expects a value like True"),
        ("trim", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("vctk", overrides=[override])


def test_recipe_for_another_corpus_is_refused(tmp_path):
    user = tmp_path / "arctic.toml"
    user.write_text('corpus = "cmu_arctic"\n')
    with pytest.raises(RecipeError, match="is for corpus 'cmu_arctic'"):
        load_recipe("vctk", user)


def test_invalid_toml_is_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trim\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe("vctk", bad)


def test_parse_override_keeps_strings():
    assert parse_override("discover.mic=mic2") == ("discover.mic", "mic2")
    assert parse_override("clean.min_seconds=0.7") == ("clean.min_seconds", 0.7)
