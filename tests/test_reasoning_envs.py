"""The reasoning envs: answer extraction, problem files, the proof solver, and the env contract."""

from __future__ import annotations

import json

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from datamodules.rollout import make_env
from envs.contract import check_env_contract
from envs.reasoning import REASONING_ENVS
from envs.reasoning.answers import answers_match, extract_answer
from envs.reasoning.logic import check_proof, generate
from envs.reasoning.problems import GymProblems, JsonlProblems
from modules.errors import ConfigError, DataFileError


@pytest.mark.parametrize(
    ("text", "answer", "method"),
    [
        ("12 + 30 = 42\n#### 42", "42", "marker"),
        ("####42", "42", "marker"),
        ("So she pays $1,234.\n#### $1,234", "1234", "marker"),
        ("The total is \\boxed{-7}.", "-7", "boxed"),
        ("The answer is 12 apples.", "12", "phrase"),
        ("Final answer: 3.50", "3.5", "phrase"),
        ("the answer is 3 + 4 = 7.", "7", "phrase"),
        ("First 5, then 9, so 14", "14", "last_number"),
        ("#### 6/4", "1.5", "marker"),
        ("answer: −3", "-3", "phrase"),
        ("#### 10\nlater text 99", "10", "marker"),  # the marker wins over a later number
        ("The answer is 42, where x = 6", "42", "phrase"),  # "=" only splits a calculation
        ("The answer isn't 5, it's 7", "7", "last_number"),
        ("So the total is 10 - 3", "3", "last_number"),  # "- 3" is a subtraction, not -3
        ("#### 0.1234567890123456", "0.1234567890123456", "marker"),  # exact, not rounded to 12 digits
    ],
)
def test_answer_extraction_formats(text, answer, method):
    found = extract_answer(text)
    assert (found.answer, found.method) == (answer, method)


@pytest.mark.parametrize("text", ["", "   ", "no number here", "#### ", None])
def test_answer_extraction_finds_nothing_without_a_number(text):
    assert extract_answer(text).answer is None


def test_answers_compare_by_value_and_wrong_ones_fail():
    assert answers_match("42.0", "42") and answers_match("1/2", "0.5") and answers_match("1,000", "1000")
    assert not answers_match("41", "42") and not answers_match(None, "42") and not answers_match("-42", "42")
    found = extract_answer("#### 1234567890123.9").answer
    assert not answers_match(found, "1234567890123.5") and answers_match(found, "1234567890123.90")


def test_math_env_rewards_any_text_and_splits_the_terms():
    env = make_env("lightspiel/Math-v0", {"format_reward": 0.25, "length_penalty": 0.5, "max_chars": 20})
    obs, _ = env.reset(seed=1)  # "4 - 1 =" -> 3
    assert "4 - 1" in obs["prompt"] and obs["legal_actions"] == ()
    *_, info = env.step("4 - 1 = 3\n#### 3")
    v = info["verdict"]
    assert (v["correct"], v["format_ok"], v["reward"]) == (True, True, 1.25)
    for text in ["", "x" * 5000, "no number", "1 2 3 4 5 6"]:
        env.reset(seed=1)
        _, reward, terminated, _, info = env.step(text)
        assert terminated and info["verdict"]["correct"] is False
        assert reward == pytest.approx(info["verdict"]["reward_length"])  # only the length term is left
    assert info["outcome"] == "ok"  # "1 2 3 4 5 6": a (wrong) answer was found
    env.reset(seed=1)
    *_, info = env.step("no number")
    assert (info["outcome"], info["parsed"], info["rule"]) == ("unparsed", False, "forfeit")


@pytest.mark.parametrize("env_id", sorted(REASONING_ENVS))
def test_reasoning_envs_keep_the_env_contract(env_id):
    env = gymnasium.make(env_id)
    check_env_contract(env, seeds=range(6))
    check_env(env.unwrapped, skip_render_check=True)


def test_gold_solutions_earn_full_reward():
    for env_id, full in (("lightspiel/Math-v0", 1.0), ("lightspiel/LogicProof-v0", 2.0)):
        env = make_env(env_id)
        for seed in range(20):
            env.reset(seed=seed)
            _, completion = env.unwrapped.gold_solution(seed)
            _, reward, *_ = env.step(completion)
            assert reward == full, (env_id, seed, completion)


def test_problems_file_errors_name_file_line_and_field(tmp_path):
    good = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}
    cases = [
        ({"answer": "#### 7"}, "question", "missing"),
        ({**good, "answer": "#### seven"}, "answer", "expected a number"),
        ({**good, "question": "  "}, "question", "non-empty"),
    ]
    for row, field, words in cases:
        path = tmp_path / "problems.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(DataFileError) as err:
            JsonlProblems(path)
        assert (err.value.line, err.value.field) == (2, field) and words in str(err.value)
        with pytest.raises(ConfigError, match=r"problems\.jsonl:2"):  # and through the env's option
            make_env("lightspiel/Math-v0", {"problems_path": str(path)})
    path.write_text(json.dumps(good) + "\n")
    env = make_env("lightspiel/Math-v0", {"problems_path": str(path)})
    env.reset(seed=5)
    assert env.step("#### 7")[4]["verdict"]["correct"]


def test_task_options_name_the_closest_valid_one():
    with pytest.raises(ConfigError, match="did you mean 'chain_sum'"):
        GymProblems("chainsum")
    with pytest.raises(ConfigError, match="did you mean 'max_terms'"):
        GymProblems("chain_sum", {"max_term": 3})
    with pytest.raises(
        ConfigError, match="not numbers"
    ):  # Math-v0 checks numbers: say so, not score 0 forever
        GymProblems("word_sorting")
    with pytest.raises(ConfigError, match="prompt_variant.*did you mean 'direct'"):
        make_env("lightspiel/Math-v0", {"prompt_variant": "drect"})


def test_problems_are_reproducible_per_seed_and_differ_across_seeds():
    source = GymProblems("chain_sum", {"min_terms": 2, "max_terms": 3, "max_digits": 2})
    assert source.problem(7) == source.problem(7)
    assert len({source.problem(s).question for s in range(20)}) > 15


def test_solver_accepts_gold_proofs_and_names_the_first_bad_step():
    for seed in range(30):
        p = generate(seed, 2, 4, 2)
        verdict = check_proof(p.premises, p.query, "\n".join(p.proof))
        assert all(s["solver_valid"] for s in verdict["steps"]) and verdict["proved"] == p.answer
        assert verdict["answer"] == p.answer
    p = generate(1, 3, 3, 2)  # fact, 3 rule applications, answer
    lines = list(p.proof)
    # A rule that is not among the premises, at step 2: step 2 is the first invalid one.
    subject = lines[1].split()[1]
    broken = [lines[0], lines[1].replace(f"Every {subject}", "Every blorpus", 1), *lines[2:]]
    steps = check_proof(p.premises, p.query, "\n".join(broken))["steps"]
    assert [s["solver_valid"] for s in steps][:2] == [True, False]
    assert "not given" in steps[1]["solver_error"]
    # Skipping a hop: the entity is not yet known to be in the rule's class.
    steps = check_proof(p.premises, p.query, "\n".join([lines[0], lines[2], lines[3]]))["steps"]
    assert [s["solver_valid"] for s in steps] == [True, False, False]
    assert "not known to be" in steps[1]["solver_error"]
    # The wrong conclusion from a given rule.
    rule, conclusion = lines[3].split(" So ")
    conclusion = (
        conclusion.replace(" is not ", " is ")
        if " is not " in conclusion
        else conclusion.replace(" is ", " is not ")
    )
    flipped = f"{rule} So {conclusion}"
    steps = check_proof(p.premises, p.query, "\n".join([*lines[:3], flipped]))["steps"]
    assert (
        steps[3]["solver_valid"] is False
        and steps[3]["solver_error"] == "the conclusion is not what the rule gives"
    )
    # An unreadable line and a claim out of nowhere.
    steps = check_proof(p.premises, p.query, "blah blah\nSam is a dragon.")["steps"]
    assert [s["solver_error"].split(":")[0] for s in steps] == [
        "unreadable",
        "states something neither given nor proved, citing no rule",
    ]


def test_proof_reward_counts_only_steps_that_prove_something():
    env = make_env("lightspiel/LogicProof-v0")
    env.reset(seed=3)
    _, gold = env.unwrapped.gold_solution(3)
    fact, answer = gold.splitlines()[0], gold.splitlines()[-1]

    def judge(text):
        env.reset(seed=3)
        return env.step(text)[4]["verdict"]

    full = judge(gold)
    assert (full["reward"], full["valid_share"], full["all_valid"]) == (2.0, 1.0, True)
    lazy = judge(f"{fact}\n{answer}")  # restating the fact and guessing proves nothing
    assert (lazy["valid_share"], lazy["all_valid"], lazy["reward"]) == (0.0, False, 1.0)
    flipped = answer.replace("False", "X").replace("True", "False").replace("X", "True")
    wrong = judge(gold.replace(answer, flipped))  # a valid proof whose answer contradicts it
    assert wrong["all_valid"] is False and wrong["reward"] == 1.0
    numbered = "\n".join(f"{i + 1}. {line}" for i, line in enumerate(gold.splitlines()[:-1]))
    formatted = judge(f"{numbered}\n**Final answer:** {answer.split()[-1]}")  # numbering and markdown
    assert (formatted["reward"], formatted["all_valid"]) == (2.0, True)
