"""Tests for neuralgpu.tasks: layouts checked against Python ints and hand-written examples."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgpu import tasks
from neuralgpu.tasks import (
    TASKS,
    VOCAB_SIZE,
    decode_answer,
    decode_digits,
    decode_operands,
    encode,
    encode_operands,
    format_example,
    get_task,
    num_operands,
    operand_digits,
    random_batch,
)

ARITHMETIC = [name for name, task in TASKS.items() if task.is_arithmetic]
TWO_OPERAND = [name for name in ARITHMETIC if TASKS[name].arity == 2]
SEQUENCE = ["copy", "rev", "dup", "sort"]
FAST = settings(max_examples=40, deadline=None)


def read_int(symbols, base):
    """Reference reader, independent of the module: LSB-first digit symbols -> Python int."""
    assert all(1 <= s <= base for s in symbols), symbols
    return sum((s - 1) * base**i for i, s in enumerate(symbols))


def expected_answer(task, values):
    if task.kind == "mul":
        return values[0] * values[1]
    return sum(values)


def test_registry_matches_the_symbol_table():
    separators = {name: task.separator for name, task in TASKS.items() if task.is_arithmetic}
    assert separators == {
        "badd": 11, "qadd": 12, "add": 13, "bmul": 14, "qmul": 15, "mul": 16,
        "omul": 17, "fmul": 18, "fadd": 19, "oadd": 20, "badd3": 21,
    }  # fmt: skip
    bases = {name: task.base for name, task in TASKS.items()}
    assert bases == {
        "badd": 2, "qadd": 4, "add": 10, "bmul": 2, "qmul": 4, "mul": 10, "omul": 8, "fmul": 5,
        "fadd": 5, "oadd": 8, "badd3": 2, "copy": 10, "rev": 10, "dup": 10, "sort": 10,
    }  # fmt: skip
    assert max(separators.values()) == VOCAB_SIZE - 1
    assert all(TASKS[name].separator is None for name in SEQUENCE)
    assert [num_operands(name) for name in ("add", "mul", "badd3", "copy")] == [2, 2, 3, 1]
    assert get_task("omul").operator == "*" and get_task("oadd").operator == "+"


@pytest.mark.parametrize("name", ARITHMETIC)
def test_random_batches_compute_the_right_answer(name):
    task = get_task(name)
    lengths = [3, 4, 12, 41, 201] if task.arity == 2 else [5, 6, 7, 41, 201]
    rng = np.random.default_rng(0)
    for length in lengths:
        inputs, targets = random_batch(task, length, 24, rng)
        assert inputs.shape == targets.shape == (24, length)
        assert inputs.dtype == targets.dtype == np.int64
        k = operand_digits(task, length)
        width = task.arity * k + task.arity - 1
        assert k == (length - task.arity + 1) // task.arity
        for row_in, row_out in zip(inputs.tolist(), targets.tolist(), strict=True):
            values = [read_int(row_in[i * (k + 1) : i * (k + 1) + k], task.base) for i in range(task.arity)]
            assert [row_in[i * (k + 1) - 1] for i in range(1, task.arity)] == [task.separator] * (task.arity - 1)
            assert row_in[width:] == row_out[width:] == [0] * (length - width)
            assert read_int(row_out[:width], task.base) == expected_answer(task, values)


@pytest.mark.parametrize("name", ARITHMETIC)
def test_random_digits_cover_the_whole_base(name):
    task = get_task(name)
    inputs, _ = random_batch(task, 41, 64, np.random.default_rng(1))
    digit_symbols = set(np.unique(inputs).tolist()) - {task.separator}
    assert digit_symbols == set(range(1, task.base + 1))


@FAST
@given(
    name=st.sampled_from(ARITHMETIC),
    values=st.lists(st.integers(0, 10**25), min_size=3, max_size=3),
    slack=st.integers(0, 4),
)
def test_encode_and_decode_round_trip_against_python_ints(name, values, slack):
    task = get_task(name)
    values = values[: task.arity]
    inputs, targets = encode(task, values)
    length = len(inputs) + slack
    inputs, targets = encode(task, values, length)
    assert inputs.shape == targets.shape == (length,)
    k = operand_digits(task, length)
    assert decode_operands(task, inputs) == values
    assert read_int(inputs[:k].tolist(), task.base) == values[0]
    assert decode_answer(task, targets) == expected_answer(task, values)
    assert read_int(targets[: task.arity * k + task.arity - 1].tolist(), task.base) == expected_answer(task, values)


@FAST
@given(name=st.sampled_from(SEQUENCE), digits=st.lists(st.integers(0, 9), min_size=3, max_size=30))
def test_sequence_tasks_round_trip(name, digits):
    inputs, targets = encode(name, digits)
    assert decode_operands(name, inputs) == digits
    answer = {"copy": digits, "rev": digits[::-1], "dup": digits + digits, "sort": sorted(digits)}[name]
    assert decode_answer(name, targets) == answer


def test_the_talks_addition_example():
    inputs, targets = encode("add", [60701242265267635090, 40594590192222998643], 41)
    assert operand_digits("add", 41) == 20
    assert "".join(str(s - 1) for s in targets[::-1]) == "00000000000000000000101295832457490633733"
    assert inputs[20] == 13
    assert "".join(str(s - 1) for s in inputs[:20][::-1]) == "60701242265267635090"


def test_small_arithmetic_examples_by_hand():
    # 3 * 2 = 6 in binary at length 7: k = 3, operands 110 and 010 LSB first, answer 0110000.
    inputs, targets = encode("bmul", [3, 2], 7)
    assert inputs.tolist() == [2, 2, 1, 14, 1, 2, 1]
    assert targets.tolist() == [1, 2, 2, 1, 1, 1, 1]
    # 7 + 5 = 12 at even length 4: k = 1 and one trailing padding symbol in both rows.
    inputs, targets = encode("add", [7, 5], 4)
    assert inputs.tolist() == [8, 13, 6, 0]
    assert targets.tolist() == [3, 2, 1, 0]
    # 1 + 1 + 1 = 3 = 11 in binary, at badd3's shortest length 5.
    inputs, targets = encode("badd3", [1, 1, 1])
    assert inputs.tolist() == [2, 21, 2, 21, 2]
    assert targets.tolist() == [2, 2, 1, 1, 1]


def test_sequence_tasks_by_hand():
    assert [row.tolist() for row in encode("copy", [3, 1, 4])] == [[4, 2, 5], [4, 2, 5]]
    assert [row.tolist() for row in encode("rev", [3, 1, 4])] == [[4, 2, 5], [5, 2, 4]]
    assert [row.tolist() for row in encode("sort", [3, 1, 4, 1, 5])] == [[4, 2, 5, 2, 6], [2, 2, 4, 5, 6]]
    inputs, targets = encode("dup", [1, 2, 3], 7)
    assert inputs.tolist() == [2, 3, 4, 0, 0, 0, 0]
    assert targets.tolist() == [2, 3, 4, 2, 3, 4, 0]
    assert [row.tolist() for row in encode("dup", [9])] == [[10, 0, 0], [10, 10, 0]]


@pytest.mark.parametrize("name", SEQUENCE)
def test_random_sequence_batches(name):
    inputs, targets = random_batch(name, 9, 16, np.random.default_rng(2))
    k = operand_digits(name, 9)
    digits = inputs[:, :k] - 1
    answer = {
        "copy": digits,
        "rev": digits[:, ::-1],
        "dup": np.concatenate([digits, digits], axis=1),
        "sort": np.sort(digits, axis=1),
    }[name]
    assert (inputs[:, k:] == 0).all()
    assert (targets[:, : answer.shape[1]] - 1 == answer).all()
    assert (targets[:, answer.shape[1] :] == 0).all()


def test_encode_operands_matches_encode():
    digits = [np.array([[1, 0, 2], [0, 0, 0]]), np.array([[2, 2, 2], [1, 0, 0]])]
    inputs, targets = encode_operands("qmul", digits, 8)
    # 1 + 0*4 + 2*16 = 33 and 2 + 2*4 + 2*16 = 42; second row 0 and 1.
    for row, values in enumerate([[33, 42], [0, 1]]):
        expected_inputs, expected_targets = encode("qmul", values, 8)
        np.testing.assert_array_equal(inputs[row], expected_inputs)
        np.testing.assert_array_equal(targets[row], expected_targets)


def test_same_seed_gives_identical_batches():
    first = random_batch("mul", 41, 8, np.random.default_rng(123))
    second = random_batch("mul", 41, 8, np.random.default_rng(123))
    other = random_batch("mul", 41, 8, np.random.default_rng(124))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_decode_answer_returns_none_for_malformed_predictions():
    _, targets = encode("badd", [5, 6], 7)
    assert decode_answer("badd", targets) == 11
    for position, symbol in [(0, 0), (3, 11), (6, 3)]:  # padding, separator, digit 2 in base 2
        prediction = targets.copy()
        prediction[position] = symbol
        assert decode_answer("badd", prediction) is None
    # The trailing padding position of an even length is not part of the answer.
    _, targets = encode("badd", [5, 6], 8)
    targets[-1] = 5
    assert decode_answer("badd", targets) == 11
    assert decode_answer("rev", [1, 2, 0]) is None


def test_decode_digits_drops_trailing_padding():
    assert decode_digits([4, 2, 5, 0, 0]).tolist() == [3, 1, 4]
    assert decode_digits([0, 0]).tolist() == []
    with pytest.raises(ValueError, match="position 1 holds symbol 0"):
        decode_digits([4, 0, 5])
    with pytest.raises(ValueError, match="position 1 holds symbol 16"):
        decode_digits([4, 16, 5])


def test_format_example_shows_question_and_answers():
    inputs, targets = encode("mul", [2, 1], 3)
    assert format_example("mul", inputs) == "2 * 1 = 002"
    assert format_example("mul", inputs, targets) == "2 * 1 = 002   model: 002 (right)"
    assert format_example("mul", inputs, [4, 1, 0]) == "2 * 1 = 002   model: _03 (wrong)"
    inputs, targets = encode("add", [7, 35], 6)
    assert format_example("add", inputs, targets) == "07 + 35 = 00042   model: 00042 (right)"
    inputs, _ = encode("badd3", [1, 2, 3])
    assert format_example("badd3", inputs) == "01 + 10 + 11 = 00000110"
    inputs, targets = encode("rev", [1, 2, 3])
    assert format_example("rev", inputs, [4, 16, 2]) == "rev(123) = 321   model: 3?1 (wrong)"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'mull'; known tasks: badd, .*sort"):
        get_task("mull")
    with pytest.raises(ValueError, match="unknown task"):
        random_batch("mull", 7, 2, np.random.default_rng(0))


def test_bad_operands_and_lengths_are_explained():
    with pytest.raises(ValueError, match=r"operand 1 of add, 1000, has 4 base-10 digits .* length >= 9"):
        encode("add", [1000, 1], 7)
    with pytest.raises(ValueError, match="non-negative"):
        encode("add", [-1, 1])
    with pytest.raises(ValueError, match="takes 2 operands"):
        encode("mul", [1, 2, 3])
    with pytest.raises(ValueError, match=r"operand 2 of bmul holds digit 2 .* run 0..1"):
        encode_operands("bmul", [np.zeros((2, 3), int), np.full((2, 3), 2)], 7)
    with pytest.raises(ValueError, match="holds digit 10"):
        encode("copy", [1, 10, 2])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        encode_operands("bmul", [np.zeros((2, 3), int), np.zeros((2, 2), int)], 7)
    with pytest.raises(ValueError, match="takes exactly 5 digits, got 3"):
        encode("sort", [1, 2, 3], 5)
    with pytest.raises(ValueError, match="length must be >= 3"):
        random_batch("add", 2, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="too short for badd3: it needs length >= 5"):
        operand_digits("badd3", 4)
    with pytest.raises(ValueError, match=r"position 1 holds symbol 16, expected 13"):
        decode_operands("add", [2, 16, 2])
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        random_batch("add", 5, 4, 0)


def test_length_2001_multiplication_is_exact():
    inputs, targets = random_batch("mul", 2001, 128, np.random.default_rng(7))
    assert operand_digits("mul", 2001) == 1000
    for row in (0, 1, 127):
        a, b = decode_operands("mul", inputs[row])
        assert a == int("".join(str(s - 1) for s in inputs[row, :1000][::-1]))
        assert b == int("".join(str(s - 1) for s in inputs[row, 1001:][::-1]))
        assert int("".join(str(s - 1) for s in targets[row][::-1])) == a * b
        assert decode_answer("mul", targets[row]) == a * b


def test_digit_to_int_handles_answers_past_the_int_str_limit():
    # Python refuses int(str) beyond 4300 decimal digits by default; answers at length 9001 have 9001.
    digits = np.random.default_rng(3).integers(0, 10, size=9001)
    reference = 0
    for digit in digits[::-1].tolist():
        reference = reference * 10 + digit
    assert tasks._digits_to_int(digits, 10) == reference
