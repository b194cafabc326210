"""A list of grids as products: counted, split and walked without building every point.

Each grid is walked as :class:`~sklearn.model_selection.ParameterGrid` walks it (keys
sorted, the last one varying fastest), grid after grid. A point that an earlier grid holds
too belongs to the earlier one, as in :func:`gridsearch.search.space.expand`. How that is
exact without a set of every id seen: two grids can hold the same point only when they
have the same keys, and grid ``i`` holds a point when each value of it is in grid ``i``'s
list for that key (values compared by their JSON, as the ids hash them). So each value
(:class:`Option`) carries a bit mask of the earlier grids with the same keys that list it
too, and a point is a duplicate when the AND of its values' masks is not 0. The points of
a grid not in earlier ones are counted by inclusion-exclusion over those masks, which is
exact; past :data:`MAX_OVERLAPS` earlier grids overlapping one grid on every key, its
points are walked to count them instead.

Ids are :func:`kampai.ids.content_id` of ``(scope, params)``, built from each value's
JSON, written once per value: the scope and the values are serialised once, not once
per candidate (``tests/gridsearch/test_grids.py`` checks the ids are the same).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import and_, or_
from typing import Any

from kampai.ids import value_text

MAX_OVERLAPS = 12
ID_LENGTH = 16  # as kampai.ids.content_id


@dataclass(frozen=True)
class Candidate:
    """One point of the search space.

    Attributes
    ----------
    id : str
        Content hash of pipeline spec, params, data fingerprint and cv.
    params : mapping
        ``step__param`` values as written in the config.
    """

    id: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Option:
    """One value of one key of a grid, with its JSON forms (key included) and its overlaps.

    ``compact`` is how :func:`kampai.ids.content_id` writes it, ``pretty`` how
    ``json.dumps(params, sort_keys=True)`` does (the run log's ``params``); bit ``i`` of
    ``earlier`` is set when earlier grid ``i`` lists the value too.
    """

    value: Any
    compact: str
    pretty: str
    earlier: int = 0


@dataclass(frozen=True)
class Block:
    """Part of one grid: the options left for each of its (sorted) keys."""

    grid: int
    keys: tuple[str, ...]
    options: tuple[tuple[Option, ...], ...]

    def fix(self, positions: Sequence[int], chosen: Sequence[Option]) -> Block:
        """This block with the keys at ``positions`` set to one option each."""
        options = list(self.options)
        for position, option in zip(positions, chosen):
            options[position] = (option,)
        return Block(self.grid, self.keys, tuple(options))

    def split(self, selects: Callable[[str], bool]) -> Iterator[tuple[dict[str, Any], Block]]:
        """``(values of the selected keys, the block with them fixed)`` for each of their combinations, in order."""
        positions = [i for i, key in enumerate(self.keys) if selects(key)]
        for chosen in itertools.product(*(self.options[i] for i in positions)):
            yield {self.keys[i]: option.value for i, option in zip(positions, chosen)}, self.fix(positions, chosen)


Point = tuple[Candidate, str]  # a candidate and its params as the run log writes them


class ProductSpace:
    """The union of grids, in :class:`~sklearn.model_selection.ParameterGrid` order, without duplicates.

    Parameters
    ----------
    grids
        Each grid's values per key, as lists (generators already expanded).
    scope
        What candidate ids hash besides the params.
    """

    def __init__(self, grids: Sequence[Mapping[str, Sequence[Any]]], scope: Any) -> None:
        self._head = "[" + _compact(scope) + ",{"
        blocks: list[Block] = []
        self._same: list[int] = []  # per grid: bits of the earlier grids with the same keys
        for index, grid in enumerate(grids):
            keys = tuple(sorted(grid))
            same = [i for i, block in enumerate(blocks) if block.keys == keys]
            listed = [[{o.compact for o in blocks[i].options[k]} for i in same] for k in range(len(keys))]
            options = tuple(tuple(_option(key, value, same, listed[k]) for value in grid[key]) for k, key in enumerate(keys))
            blocks.append(Block(index, keys, options))
            self._same.append(sum(1 << i for i in same))
        self.blocks = tuple(blocks)

    def __len__(self) -> int:
        return sum(self.count(block) for block in self.blocks)

    def __iter__(self) -> Iterator[Candidate]:
        return (candidate for block in self.blocks for candidate, _ in self.walk(block))

    def count(self, block: Block) -> int:
        """Points of ``block`` no earlier grid holds: its product minus, by inclusion-exclusion, the earlier ones'."""
        total = math.prod(len(options) for options in block.options)
        overlapping = _overlaps(block, self._same[block.grid])
        if not overlapping or not total:
            return total
        if len(overlapping) > MAX_OVERLAPS:
            return sum(1 for _ in self.walk(block))
        held = 0
        for size in range(1, len(overlapping) + 1):
            for subset in itertools.combinations(overlapping, size):
                mask = sum(1 << i for i in subset)
                term = math.prod(sum(1 for o in options if o.earlier & mask == mask) for options in block.options)
                held += term if size % 2 else -term
        return total - held

    def walk(self, block: Block) -> Iterator[Point]:
        """The points of ``block`` no earlier grid holds, in order, each hashed once."""
        same = self._same[block.grid]
        check = bool(_overlaps(block, same))
        head, keys = self._head, block.keys
        for combination in itertools.product(*block.options):
            if check and reduce(and_, (o.earlier for o in combination), same):
                continue
            text = head + ",".join(o.compact for o in combination) + "}]"
            candidate = Candidate(hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH],
                                  dict(zip(keys, (o.value for o in combination))))
            yield candidate, "{" + ", ".join(o.pretty for o in combination) + "}"

    def split_by(self, selects: Callable[[str], bool]) -> list[tuple[dict[str, Any], Part]]:
        """The distinct values of the selected keys, in order of first use, each with the blocks that hold them."""
        parts: dict[str, tuple[dict[str, Any], list[Block]]] = {}
        for block in self.blocks:
            if all(block.options):
                for values, part in block.split(selects):
                    parts.setdefault(_compact(values), (values, []))[1].append(part)
        return [(values, Part(self, blocks)) for values, blocks in parts.values()]

    def firsts(self, selects: Callable[[str], bool], label: Callable[[Mapping[str, Any]], str]) -> list[Candidate]:
        """The first candidate of each distinct ``label`` of the selected keys' values, in order of appearance.

        Within a grid, the first point with given selected values has every other key at
        its first value; a duplicate's label was met in an earlier grid already.
        """
        found: dict[str, Candidate] = {}
        for block in self.blocks:
            if not self.count(block):
                continue
            for values, part in block.split(selects):
                name = label(values)
                if name in found:
                    continue
                first = next(self.walk(part.fix(range(len(part.keys)), [o[0] for o in part.options])), None)
                if first is not None:
                    found[name] = first[0]
        return list(found.values())

    def values(self) -> Iterator[Any]:
        """Every value any grid lists."""
        return (option.value for block in self.blocks for options in block.options for option in options)


class Part:
    """The candidates of some blocks of a :class:`ProductSpace` (one prefix group's), counted once."""

    def __init__(self, space: ProductSpace, blocks: Sequence[Block]) -> None:
        self._space, self._blocks = space, tuple(blocks)
        self._len = sum(space.count(block) for block in self._blocks)

    def __len__(self) -> int:
        return self._len

    def walk(self) -> Iterator[Point]:
        return (point for block in self._blocks for point in self._space.walk(block))

    def where(self, selects: Callable[[str], bool], accept: Callable[[Mapping[str, Any]], bool]) -> Iterator[Point]:
        """:meth:`walk` of the combinations of the selected keys ``accept`` takes, without walking the others."""
        for block in self._blocks:
            for values, part in block.split(selects):
                if accept(values):
                    yield from self._space.walk(part)


def _overlaps(block: Block, same: int) -> list[int]:
    """The earlier grids that may share a point with ``block``: same keys, a common value on every key."""
    common = reduce(and_, (reduce(or_, (o.earlier for o in options), 0) for options in block.options), same)
    return [i for i in range(common.bit_length()) if common >> i & 1]


def _option(key: str, value: Any, same: Sequence[int], listed: Sequence[set[str]]) -> Option:
    """``value`` of ``key``, with the bits of the earlier grids ``same`` whose ``listed`` values hold it."""
    compact = f"{json.dumps(key)}:{_compact(value)}"
    mask = sum(1 << i for i, values in zip(same, listed) if compact in values)
    return Option(value, compact, f"{json.dumps(key)}: {json.dumps(value, sort_keys=True)}", mask)


def _compact(value: Any) -> str:
    """JSON as :func:`kampai.ids.content_id` writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=value_text)
