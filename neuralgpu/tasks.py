"""Algorithmic tasks for the Neural GPU: symbols, example layouts and batch generators.

Every example is two int64 rows of the same ``length`` (the model's width): input symbols and target
symbols. Symbol 0 is padding, digit ``d`` is symbol ``d + 1`` (bases up to 10, so symbols 1..10), and each
arithmetic task has its own separator symbol (11..21; the first eight follow P16's numbering). One
vocabulary of ``VOCAB_SIZE`` symbols serves every task, so a model can switch task mid-training.

Layouts at sequence length ``length`` (``k = operand_digits(task, length)``, digits least significant first):

- two-operand arithmetic, ``k = (length - 1) // 2``:
  input ``op1 (k digits) | separator | op2 (k digits)``, target ``op1 + op2`` or ``op1 * op2`` zero-padded
  to ``2k + 1`` digits.
- ``badd3``, ``k = (length - 2) // 3``: input ``op1 | sep | op2 | sep | op3``, target the sum in
  ``3k + 2`` digits.
- ``copy``, ``rev``, ``sort``: ``k = length`` digits; target the digits unchanged, reversed, sorted ascending.
- ``dup``: ``k = length // 2`` digits followed by padding; target the ``k`` digits twice.

Positions past the layout (one position when an arithmetic length is even) are padding in both rows.
Batches are ``(batch, length)`` arrays, one example a ``(length,)`` array. NumPy only, no I/O.
"""

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD = 0
"""Padding symbol; the model must predict it wherever the target is padding."""
DIGIT_OFFSET = 1
"""Digit ``d`` is written as symbol ``d + DIGIT_OFFSET``."""
VOCAB_SIZE = 22
"""Padding, ten digit symbols and eleven separators (one per arithmetic task)."""
MIN_LENGTH = 3
"""Narrowest example: one digit, a separator, one digit."""

ARITHMETIC_KINDS = ("add", "mul")
SEQUENCE_KINDS = ("copy", "rev", "dup", "sort")
_DIGITS_PER_CHUNK = 1000


@dataclass(frozen=True)
class Task:
    """One algorithmic task: its operands and how the target is computed from them."""

    name: str
    """Registry key used in configs, e.g. ``"bmul"``."""
    kind: str
    """``"add"`` or ``"mul"`` (arithmetic), or one of ``"copy"``, ``"rev"``, ``"dup"``, ``"sort"``."""
    base: int
    """Digits run over ``0..base-1``."""
    arity: int
    """Number of operands: 2 (3 for ``badd3``) for arithmetic, 1 digit sequence for the sequence tasks."""
    separator: int | None
    """Symbol written between operands; None for the sequence tasks."""
    description: str
    """One line for people."""

    @property
    def is_arithmetic(self) -> bool:
        return self.kind in ARITHMETIC_KINDS

    @property
    def operator(self) -> str | None:
        """``"+"`` or ``"*"`` for arithmetic tasks, None for sequence tasks."""
        return {"add": "+", "mul": "*"}.get(self.kind)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("badd", "add", 2, 2, 11, "binary addition of two numbers"),
        Task("qadd", "add", 4, 2, 12, "base-4 addition of two numbers"),
        Task("add", "add", 10, 2, 13, "decimal addition of two numbers"),
        Task("bmul", "mul", 2, 2, 14, "binary multiplication of two numbers"),
        Task("qmul", "mul", 4, 2, 15, "base-4 multiplication of two numbers"),
        Task("mul", "mul", 10, 2, 16, "decimal multiplication of two numbers"),
        Task("omul", "mul", 8, 2, 17, "octal multiplication of two numbers"),
        Task("fmul", "mul", 5, 2, 18, "base-5 multiplication of two numbers"),
        Task("fadd", "add", 5, 2, 19, "base-5 addition of two numbers"),
        Task("oadd", "add", 8, 2, 20, "octal addition of two numbers"),
        Task("badd3", "add", 2, 3, 21, "binary addition of three numbers"),
        Task("copy", "copy", 10, 1, None, "copy a sequence of decimal digits"),
        Task("rev", "rev", 10, 1, None, "reverse a sequence of decimal digits"),
        Task("dup", "dup", 10, 1, None, "write a sequence of decimal digits twice"),
        Task("sort", "sort", 10, 1, None, "sort a sequence of decimal digits ascending"),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``; ValueError listing the known names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def num_operands(task: Task | str) -> int:
    """How many operands an example of ``task`` has (1 for the sequence tasks)."""
    return _resolve(task).arity


def operand_digits(task: Task | str, length: int) -> int:
    """Digits per operand (k) in an example of ``length`` symbols; ValueError if ``length`` is too short."""
    task = _resolve(task)
    length = _check_length(length)
    if task.is_arithmetic:
        # arity operands of k digits and arity - 1 separators fit in length.
        k = (length - (task.arity - 1)) // task.arity
    elif task.kind == "dup":
        k = length // 2
    else:
        k = length
    if k < 1:
        shortest = 2 * task.arity - 1
        raise ValueError(f"length {length} is too short for {task.name}: it needs length >= {shortest}")
    return k


def answer_digits(task: Task | str, length: int) -> int:
    """Digits in the target of an example of ``length`` symbols (the rest of the target is padding)."""
    task = _resolve(task)
    k = operand_digits(task, length)
    if task.is_arithmetic:
        # The answer fills the input's width: 2k + 1 (two operands) or 3k + 2 (badd3) digits.
        return task.arity * k + task.arity - 1
    return 2 * k if task.kind == "dup" else k


def random_batch(
    task: Task | str, length: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)``, each ``(batch_size, length)`` int64; every operand digit uniform in [0, base).

    All randomness comes from ``rng``: the same generator state gives the same arrays.
    """
    task = _resolve(task)
    k = operand_digits(task, length)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    operands = [rng.integers(0, task.base, size=(batch_size, k), dtype=np.int64) for _ in range(task.arity)]
    return encode_operands(task, operands, length)


def tough_batch(
    task: Task | str, length: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """P16's hard examples for two-operand arithmetic, ``(inputs, targets)`` each ``(batch_size, length)``.

    Per example: 20% both operands near a power of the base (base^j + d, |d| <= 2), 20% a pair summing to
    base^j or base^j - 1 (long carry chains), 60% uniform digits.
    """
    task = _resolve(task)
    if not (task.is_arithmetic and task.arity == 2):
        raise ValueError(f"hard examples exist for two-operand arithmetic tasks, not {task.name}")
    k = operand_digits(task, length)
    limit = task.base**k  # operands have at most k digits
    kinds = rng.choice(3, size=batch_size, p=[0.2, 0.2, 0.6])
    pairs = []
    for kind in kinds:
        if kind == 0:
            near = [task.base ** int(rng.integers(0, k + 1)) + int(rng.integers(-2, 3)) for _ in range(2)]
            pairs.append([min(max(value, 0), limit - 1) for value in near])
        elif kind == 1:
            total = task.base ** int(rng.integers(1, k + 1)) - int(rng.integers(0, 2))
            pairs.append(operands_summing_to(total, limit, rng))
        else:
            pairs.append([_random_int(task.base, k, rng) for _ in range(2)])
    return encode_ints(task, pairs, length)


def operands_summing_to(total: int, limit: int, rng: np.random.Generator) -> list[int]:
    """A uniformly random pair [a, b] with a + b == total and both below ``limit`` (total < 2 * limit)."""
    low, high = max(0, total - limit + 1), min(total, limit - 1)
    a = low + _random_below(high - low + 1, rng)
    return [a, total - a]


def encode_ints(task: Task | str, operand_rows: Sequence[Sequence[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch from Python-int operands: ``operand_rows[i]`` holds example i's operands (e.g. ``[a, b]``)."""
    task = _resolve(task)
    k = operand_digits(task, length)
    columns = []
    for index in range(task.arity):
        rows = []
        for operands in operand_rows:
            digits = _int_to_digits(operands[index], task.base, f"operand {index + 1} of {task.name}")
            if len(digits) > k:
                raise ValueError(
                    f"operand {operands[index]} of {task.name} does not fit in {k} digits at length {length}"
                )
            rows.append(digits + [0] * (k - len(digits)))
        columns.append(np.array(rows, dtype=np.int64).reshape(len(operand_rows), k))
    return encode_operands(task, columns, length)


def _random_int(base: int, digits: int, rng: np.random.Generator) -> int:
    """A uniform integer in [0, base^digits) from uniform digits (exact for any size)."""
    return _digits_to_int(rng.integers(0, base, size=digits), base)


def _random_below(bound: int, rng: np.random.Generator) -> int:
    """A uniform integer in [0, bound) for Python ints of any size (rejection sampling over bits)."""
    if bound <= 2**62:
        return int(rng.integers(0, bound))
    bits = bound.bit_length()
    while True:
        value = _digits_to_int(rng.integers(0, 2, size=bits), 2)
        if value < bound:
            return value


def encode_operands(task: Task | str, operands: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode digit arrays and compute their answer.

    ``operands`` holds ``num_operands(task)`` arrays of shape ``(batch, k)`` with ``k = operand_digits(task,
    length)``: digits least significant first for arithmetic, the digit sequence itself for sequence tasks.
    Returns ``(inputs, targets)``, each ``(batch, length)`` int64.
    """
    task = _resolve(task)
    k = operand_digits(task, length)
    digits = _check_operand_arrays(task, operands, k, length)
    batch = digits[0].shape[0]
    inputs = np.full((batch, length), PAD, dtype=np.int64)
    targets = np.full((batch, length), PAD, dtype=np.int64)
    width = answer_digits(task, length)

    if task.is_arithmetic:
        for index, operand in enumerate(digits):
            start = index * (k + 1)
            if index > 0:
                inputs[:, start - 1] = task.separator
            inputs[:, start : start + k] = operand + DIGIT_OFFSET
        if task.kind == "add":
            answer = _sum_digits(digits, task.base, width)
        else:
            answer = _product_digits(digits[0], digits[1], task.base, width)
    else:
        (sequence,) = digits
        inputs[:, :k] = sequence + DIGIT_OFFSET
        answer = {
            "copy": sequence,
            "rev": sequence[:, ::-1],
            "dup": np.concatenate([sequence, sequence], axis=1),
            "sort": np.sort(sequence, axis=1),
        }[task.kind]

    targets[:, :width] = answer + DIGIT_OFFSET
    return inputs, targets


def encode(task: Task | str, operands: Sequence[int], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One example as ``(inputs, targets)``, each ``(length,)`` int64.

    ``operands`` are non-negative Python ints for arithmetic tasks (``[a, b]``, or ``[a, b, c]`` for badd3)
    and the list of digits for sequence tasks. ``length=None`` picks the shortest length that fits.
    """
    task = _resolve(task)
    operands = list(operands)
    if task.is_arithmetic:
        if len(operands) != task.arity:
            raise ValueError(f"{task.name} takes {task.arity} operands, got {len(operands)}: {operands}")
        digit_lists = [
            _int_to_digits(value, task.base, f"operand {i + 1} of {task.name}") for i, value in enumerate(operands)
        ]
        most_digits = max(len(digits) for digits in digit_lists)
        if length is None:
            length = task.arity * most_digits + task.arity - 1
        k = operand_digits(task, length)
        for index, digits in enumerate(digit_lists):
            if len(digits) > k:
                raise ValueError(
                    f"operand {index + 1} of {task.name}, {operands[index]}, has {len(digits)} "
                    f"base-{task.base} digits but length {length} holds {k} per operand; use length >= "
                    f"{task.arity * most_digits + task.arity - 1} or length=None"
                )
        rows = [np.array([digits + [0] * (k - len(digits))]) for digits in digit_lists]
    else:
        if length is None:
            length = max(2 * len(operands) if task.kind == "dup" else len(operands), MIN_LENGTH)
        k = operand_digits(task, length)
        if len(operands) != k:
            raise ValueError(f"{task.name} at length {length} takes exactly {k} digits, got {len(operands)}")
        rows = [np.array([operands])]
    inputs, targets = encode_operands(task, rows, length)
    return inputs[0], targets[0]


def decode_digits(symbols: np.ndarray | Sequence[int]) -> np.ndarray:
    """Digits ``(n,)`` of a row of digit symbols ``(length,)``, with trailing padding dropped.

    ValueError if a symbol before the trailing padding is not a digit (inner padding or a separator).
    """
    row = _as_row(symbols)
    nonpad = np.flatnonzero(row != PAD)
    row = row[: nonpad[-1] + 1] if nonpad.size else row[:0]
    digits = row - DIGIT_OFFSET
    bad = np.flatnonzero((digits < 0) | (digits > 9))
    if bad.size:
        raise ValueError(f"position {bad[0]} holds symbol {row[bad[0]]}, not a digit (symbols 1..10)")
    return digits


def decode_operands(task: Task | str, inputs: np.ndarray | Sequence[int]) -> list[int]:
    """The operands written in one input row ``(length,)``.

    Arithmetic: the operand values as Python ints. Sequence tasks: the digit sequence. ValueError, naming
    the position, if the row is not a valid input of ``task`` at its length.
    """
    task = _resolve(task)
    row = _as_row(inputs)
    k = operand_digits(task, len(row))
    if task.is_arithmetic:
        expected = np.full(len(row), PAD, dtype=np.int64)
        for index in range(1, task.arity):
            expected[index * (k + 1) - 1] = task.separator
        is_digit_position = np.zeros(len(row), dtype=bool)
        for index in range(task.arity):
            is_digit_position[index * (k + 1) : index * (k + 1) + k] = True
    else:
        expected = np.full(len(row), PAD, dtype=np.int64)
        is_digit_position = np.arange(len(row)) < k
    is_valid_digit = (row >= DIGIT_OFFSET) & (row < DIGIT_OFFSET + task.base)
    valid = np.where(is_digit_position, is_valid_digit, row == expected)
    if not valid.all():
        position = int(np.flatnonzero(~valid)[0])
        wanted = f"a base-{task.base} digit symbol" if is_digit_position[position] else expected[position]
        raise ValueError(
            f"not a {task.name} input of length {len(row)}: position {position} holds symbol "
            f"{row[position]}, expected {wanted}"
        )
    if not task.is_arithmetic:
        return (row[:k] - DIGIT_OFFSET).tolist()
    return [
        _digits_to_int(row[index * (k + 1) : index * (k + 1) + k] - DIGIT_OFFSET, task.base)
        for index in range(task.arity)
    ]


def decode_answer(task: Task | str, symbols: np.ndarray | Sequence[int]) -> int | list[int] | None:
    """The answer written in one target or prediction row ``(length,)``.

    Arithmetic: a Python int read from the LSB-first answer digits. Sequence tasks: the list of digits.
    None if a position that should hold a digit holds padding, a separator or a digit outside the base,
    so a model's prediction can always be decoded. Positions past the answer are not read.
    """
    task = _resolve(task)
    row = _as_row(symbols)
    answer = row[: answer_digits(task, len(row))] - DIGIT_OFFSET
    if ((answer < 0) | (answer >= task.base)).any():
        return None
    if task.is_arithmetic:
        return _digits_to_int(answer, task.base)
    return answer.tolist()


def format_example(
    task: Task | str, inputs: np.ndarray | Sequence[int], outputs: np.ndarray | Sequence[int] | None = None
) -> str:
    """One example as a line for people, e.g. ``"2 * 1 = 002"`` for mul at length 3.

    Arithmetic numbers are shown most significant digit first with all their zero padding, as the model
    sees them; sequence tasks show digits in sequence order, e.g. ``"rev(123) = 321"``. The expected answer
    is computed from ``inputs``. When ``outputs`` (a prediction row ``(length,)``) is given, the model's
    answer follows, with ``_`` for padding and ``?`` for any other non-digit symbol, and whether it is right.
    """
    task = _resolve(task)
    row = _as_row(inputs)
    length = len(row)
    k = operand_digits(task, length)
    width = answer_digits(task, length)
    _, target = encode(task, decode_operands(task, row), length)

    if task.is_arithmetic:
        numbers = [_render(row[i * (k + 1) : i * (k + 1) + k][::-1]) for i in range(task.arity)]
        line = f" {task.operator} ".join(numbers) + f" = {_render(target[:width][::-1])}"
    else:
        line = f"{task.name}({_render(row[:k])}) = {_render(target[:width])}"
    if outputs is None:
        return line

    prediction = _as_row(outputs)
    if len(prediction) != length:
        raise ValueError(f"outputs have length {len(prediction)} but inputs have length {length}")
    shown = prediction[:width][::-1] if task.is_arithmetic else prediction[:width]
    answer = decode_answer(task, prediction)
    verdict = "right" if answer is not None and answer == decode_answer(task, target) else "wrong"
    return f"{line}   model: {_render(shown)} ({verdict})"


def _resolve(task: Task | str) -> Task:
    return get_task(task) if isinstance(task, str) else task


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int | np.integer):
        raise TypeError(f"length must be an int, got {length!r}")
    if length < MIN_LENGTH:
        raise ValueError(f"length must be >= {MIN_LENGTH} (one digit, a separator, one digit), got {length}")
    return int(length)


def _check_operand_arrays(task: Task, operands: Sequence[np.ndarray], k: int, length: int) -> list[np.ndarray]:
    """The operands as int64 ``(batch, k)`` arrays, after checking their count, shapes and digits."""
    if len(operands) != task.arity:
        raise ValueError(f"{task.name} takes {task.arity} operand arrays, got {len(operands)}")
    arrays = []
    for index, operand in enumerate(operands):
        array = np.asarray(operand)
        where = f"operand {index + 1} of {task.name}"
        if array.ndim != 2 or array.shape[1] != k or array.shape[0] != np.shape(operands[0])[0]:
            raise ValueError(
                f"{where} has shape {array.shape}; at length {length} every operand must be "
                f"(batch, {k}) with the same batch"
            )
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{where} has dtype {array.dtype}; digits must be integers")
        array = array.astype(np.int64)
        bad = np.flatnonzero((array < 0) | (array >= task.base))
        if bad.size:
            row, column = np.unravel_index(bad[0], array.shape)
            raise ValueError(
                f"{where} holds digit {array[row, column]} at example {row}, digit {column}; "
                f"base-{task.base} digits run 0..{task.base - 1}"
            )
        arrays.append(array)
    return arrays


def _propagate_carries(columns: np.ndarray, base: int) -> np.ndarray:
    """Digits ``(batch, width)`` of the numbers whose per-position sums are ``columns`` ``(batch, width)``."""
    digits = np.empty_like(columns)
    carry = np.zeros(columns.shape[0], dtype=np.int64)
    for position in range(columns.shape[1]):
        carry, digits[:, position] = np.divmod(columns[:, position] + carry, base)
    assert not carry.any(), "answer width too small for the carries"
    return digits


def _sum_digits(operands: list[np.ndarray], base: int, width: int) -> np.ndarray:
    """Digits ``(batch, width)`` of the sum of LSB-first ``(batch, k)`` digit arrays."""
    columns = np.zeros((operands[0].shape[0], width), dtype=np.int64)
    for operand in operands:
        columns[:, : operand.shape[1]] += operand
    return _propagate_carries(columns, base)


def _product_digits(a: np.ndarray, b: np.ndarray, base: int, width: int) -> np.ndarray:
    """Digits ``(batch, width)`` of the product of LSB-first ``(batch, k)`` digit arrays (``width >= 2k``)."""
    k = a.shape[1]
    columns = np.zeros((a.shape[0], width), dtype=np.int64)
    # A column sums at most k partial products of (base - 1)^2 each (81_000 for k = 1000, base 10), so int64
    # cannot overflow; one carry pass at the end is enough.
    for position in range(k):
        columns[:, position : position + k] += a[:, position : position + 1] * b
    return _propagate_carries(columns, base)


def _int_to_digits(value: int, base: int, where: str) -> list[int]:
    """LSB-first digits of a non-negative int (``[0]`` for zero)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{where} must be an int, got {value!r}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{where} is {value}; operands must be non-negative")
    digits = []
    while True:
        value, digit = divmod(value, base)
        digits.append(digit)
        if value == 0:
            return digits


def _digits_to_int(digits: np.ndarray, base: int) -> int:
    """The Python int whose LSB-first digits are ``digits`` ``(n,)``, all in [0, base) with base <= 10."""
    msb_first = "".join(map(str, digits[::-1].tolist()))
    value = 0
    # int() refuses decimal strings over sys.get_int_max_str_digits() (4300) digits, so read in chunks.
    for start in range(0, len(msb_first), _DIGITS_PER_CHUNK):
        chunk = msb_first[start : start + _DIGITS_PER_CHUNK]
        value = value * base ** len(chunk) + int(chunk, base)
    return value


def _as_row(symbols: np.ndarray | Sequence[int]) -> np.ndarray:
    row = np.asarray(symbols)
    if row.ndim != 1:
        raise ValueError(f"expected one example of shape (length,), got shape {row.shape}")
    if row.size and not np.issubdtype(row.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {row.dtype}")
    return row.astype(np.int64)


def _render(symbols: np.ndarray) -> str:
    """Digit symbols as digit characters, padding as ``_`` and anything else as ``?``."""
    return "".join(
        str(s - DIGIT_OFFSET) if DIGIT_OFFSET <= s < DIGIT_OFFSET + 10 else "_" if s == PAD else "?"
        for s in symbols.tolist()
    )
