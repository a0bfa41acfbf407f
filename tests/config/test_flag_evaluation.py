"""Feature flag evaluation and bucketing (pure): the module the RPC and the client library share."""

from __future__ import annotations

from controlplane.config.flags import FlagDecision, bucket, check_flags, evaluate, in_rollout

DOC = {
    "flags": {
        "dark-mode": True,
        "old-ui": False,
        "off": {"enabled": False, "rollout": 100},
        "checkout": {
            "rules": [
                {"match": {"country": ["NL", "BE"], "plan": "pro"}, "enabled": True},
                {"match": {"plan": "free"}, "enabled": False},
            ],
            "rollout": 25,
        },
        "everyone": {"description": "on by default"},
    }
}


def test_unknown_flag_is_off():
    assert evaluate(DOC, "nope", "u1") == FlagDecision(False, "unknown_flag")
    assert evaluate({}, "dark-mode") == FlagDecision(False, "unknown_flag")


def test_boolean_flags_are_plain_on_off():
    assert evaluate(DOC, "dark-mode").enabled and evaluate(DOC, "dark-mode").reason == "default"
    assert evaluate(DOC, "old-ui").reason == "disabled" and not evaluate(DOC, "old-ui").enabled


def test_master_switch_off_wins_over_everything():
    decision = evaluate(DOC, "off", "u1", {"plan": "pro"})
    assert (decision.enabled, decision.reason) == (False, "disabled")


def test_first_matching_rule_decides_and_every_attribute_of_a_rule_must_match():
    pro_nl = evaluate(DOC, "checkout", "u1", {"country": "NL", "plan": "pro"})
    assert (pro_nl.enabled, pro_nl.reason) == (True, "targeted")
    free = evaluate(DOC, "checkout", "u1", {"country": "NL", "plan": "free"})
    assert (free.enabled, free.reason) == (False, "targeted")
    pro_de = evaluate(DOC, "checkout", "u1", {"country": "DE", "plan": "pro"})
    assert pro_de.reason == "rollout"


def test_rollout_bucketing_is_stable_per_subject_and_close_to_the_percentage():
    answers = [evaluate(DOC, "checkout", f"user-{i}").enabled for i in range(10_000)]
    assert answers == [evaluate(DOC, "checkout", f"user-{i}").enabled for i in range(10_000)]
    assert 2300 < sum(answers) < 2700


def test_raising_a_rollout_only_adds_subjects():
    subjects = [f"user-{i}" for i in range(2000)]
    at_10 = {s for s in subjects if in_rollout("f", s, 10)}
    at_30 = {s for s in subjects if in_rollout("f", s, 30)}
    assert at_10 < at_30


def test_flags_bucket_independently_of_each_other():
    subjects = [f"user-{i}" for i in range(2000)]
    assert [bucket("a", s) for s in subjects] != [bucket("b", s) for s in subjects]


def test_bucket_is_sha256_of_flag_and_key():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"checkout:user-42").digest()[:8], "big") % 10_000
    assert bucket("checkout", "user-42") == expected


def test_empty_subject_key_is_outside_partial_rollouts_but_inside_full_ones():
    assert not in_rollout("f", "", 99.9)
    assert in_rollout("f", "", 100)
    assert not in_rollout("f", "anyone", 0)


def test_object_flag_without_rules_or_rollout_is_on():
    assert evaluate(DOC, "everyone", "u").reason == "default" and evaluate(DOC, "everyone").enabled


def test_invalid_definitions_are_reported_with_their_paths():
    doc = {
        "flags": {
            "bad rollout": {"rollout": 150},
            "typo": {"rolout": 10},
            "rules": {"rules": [{"match": {"plan": 3}}, "x"]},
            "kind": "on",
        }
    }
    fields = {v.field for v in check_flags(doc)}
    assert fields == {
        'content.flags["bad rollout"]',
        'content.flags["bad rollout"].rollout',
        "content.flags.typo.rolout",
        "content.flags.rules.rules[0].match.plan",
        "content.flags.rules.rules[1]",
        "content.flags.kind",
    }
    assert check_flags({"flags": []})[0].field == "content.flags"
    assert check_flags(DOC) == []


def test_a_definition_that_bypassed_validation_evaluates_off():
    assert evaluate({"flags": {"x": {"rollout": "lots"}}}, "x", "u") == evaluate({"flags": {"x": {"rollout": -1}}}, "x")
    assert evaluate({"flags": {"x": {"rollout": "lots"}}}, "x", "u").reason == "invalid_flag"
