from nodemesh.tools.sim.expand import container_env, expand

VARS = {"POD_NAME": "catalog-a", "PORT": "8080"}


def test_defined_references_expand():
    assert expand("--name=$(POD_NAME):$(PORT)", VARS) == "--name=catalog-a:8080"


def test_undefined_references_stay_as_written():
    assert expand("$(NOPE) and $(POD_NAME)", VARS) == "$(NOPE) and catalog-a"


def test_double_dollar_escapes():
    assert expand("$$(POD_NAME)", VARS) == "$(POD_NAME)"
    assert expand("cost: $$5", VARS) == "cost: $5"


def test_other_dollars_and_unterminated_references_are_kept():
    assert expand("$HOME $ $(POD_NAME", VARS) == "$HOME $ $(POD_NAME"


def test_declared_env_may_refer_to_what_comes_before_it():
    env = container_env({"POD_NAME": "p"}, {"A": "$(POD_NAME)-a", "B": "$(A)-b", "C": "$(D)", "D": "d"})
    assert env == {"POD_NAME": "p", "A": "p-a", "B": "p-a-b", "C": "$(D)", "D": "d"}
