"""Pairs on disk are TRL's conversational preference examples: TRL trains on lightspiel's tokens."""

import json
import re

import pytest

from datamodules.records import (
    DataFileError,
    PreferencePair,
    from_dict,
    read_jsonl,
    to_json,
    write_jsonl_atomic,
)

SYSTEM = "You are a careful game player. Answer with the move only."


def _pair(system=SYSTEM) -> PreferencePair:
    return PreferencePair(
        pair_id="p1",
        prompt="Tic-tac-toe. You play X.\nLegal moves: 1 5 9\nReply with one cell number.",
        chosen="5",
        rejected="I would say 10",
        chosen_score=1.0,
        rejected_score=-1.0,
        strategy="oracle",
        state_key="s1",
        game="tic_tac_toe",
        seat=0,
        episode_ids=["e1"],
        system=system,
    )


def test_a_pair_is_written_as_chat_messages_with_its_provenance_and_reads_back(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl_atomic(path, [_pair(), _pair(system=None)])
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["prompt"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": _pair().prompt},
    ]
    assert first["chosen"] == [{"role": "assistant", "content": "5"}]
    assert first["rejected"] == [{"role": "assistant", "content": "I would say 10"}]
    assert first["chosen_score"] == 1.0 and first["state_key"] == "s1" and "system" not in first
    assert second["prompt"] == [{"role": "user", "content": _pair().prompt}]  # no system message sent
    assert read_jsonl(path, PreferencePair) == [_pair(), _pair(system=None)]


def test_pairs_in_the_old_plain_shape_still_load(tmp_path):
    plain = {k: v for k, v in json.loads(to_json(_pair())).items()}
    plain.update(prompt=_pair().prompt, chosen="5", rejected="I would say 10")
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(plain) + "\n")
    (pair,) = read_jsonl(path, PreferencePair)
    assert (pair.prompt, pair.chosen, pair.rejected, pair.system) == (_pair().prompt, "5", "I would say 10", None)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"prompt": [{"role": "assistant", "content": "x"}]}, "prompt[0]"),
        ({"prompt": [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}]}, "prompt"),
        ({"chosen": [{"role": "user", "content": "5"}]}, "chosen[0]"),
        ({"rejected": []}, "rejected"),
    ],
)
def test_a_malformed_conversation_names_the_field(change, field):
    data = {**json.loads(to_json(_pair())), **change}
    with pytest.raises(DataFileError, match=re.escape(f"pairs.jsonl:3: field '{field}'")):
        from_dict(PreferencePair, data, "pairs.jsonl", 3)


def test_trl_tokenizes_our_pair_into_the_tokens_lightspiel_trains_on(tmp_path, tiny_model_dir, tiny_policy):
    """TRL's DPOTrainer, given our pairs file unchanged, sees the same prompt tokens (chat template,
    system message) and the same answer tokens; TRL's answers also carry the template's newline after
    the end-of-turn token, which lightspiel does not train (generation stops at end-of-turn)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    pair = _pair(system=tiny_policy.system_prompt)
    path = tmp_path / "pairs_train.jsonl"
    write_jsonl_atomic(path, [pair])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, report_to=[], dataset_num_proc=None),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    example = trainer.train_dataset[0]
    assert example["prompt_ids"] == tiny_policy.prompt_ids(pair.prompt)
    newline = tok("\n", add_special_tokens=False).input_ids
    assert example["chosen_ids"] == tiny_policy.completion_ids(pair.chosen) + newline
    assert example["rejected_ids"] == tiny_policy.completion_ids(pair.rejected) + newline
    # The plain shape (what the pairs were before) gives TRL a prompt without the chat template.
    plain = Dataset.from_list([{"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}])
    other = trainer._prepare_dataset(plain, tok, trainer.args, "plain")[0]
    assert other["prompt_ids"] != tiny_policy.prompt_ids(pair.prompt)
