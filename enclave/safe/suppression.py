"""Secondary suppression: hidden cells must stay hidden when margins are shown.

A table with margins is a set of linear equations: every row and every column of the grid
(margins included, with the margin entering with a minus sign) sums to zero. Take the
suppressed cells as edges of a bipartite graph between rows and columns. A suppressed
cell's value follows from what is shown exactly when its edge is a *bridge* of that graph
(it lies on no cycle): cycles are the only freedom the equations leave. So secondary
suppression adds cells, smallest first, until no suppressed cell is a bridge.
"""

from __future__ import annotations

import numpy as np


def protect(weights: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """Cells to suppress in a grid whose last row and last column are margins.

    ``weights`` (same shape) ranks candidates: the lowest is sacrificed first (the count is
    a good choice, so the least information is lost). Returns a boolean mask that includes
    ``primary``; no cell in it can be derived from the cells outside it.
    """
    rows, cols = primary.shape
    if rows < 2 or cols < 2:
        raise ValueError("a grid with margins has at least two rows and two columns")
    hidden = primary.astype(bool).copy()
    # Margins are sacrificed only after every inner cell: losing a total hurts readers most.
    cost = np.asarray(weights, dtype=float).copy()
    cost = np.where(np.isfinite(cost), cost, np.inf)
    cost[-1, :] += 1e18
    cost[:, -1] += 1e18
    while True:
        bridge = _first_bridge(hidden)
        if bridge is None:
            return hidden
        hidden[_repair(hidden, cost, bridge)] = True


def _first_bridge(hidden: np.ndarray) -> tuple[int, int] | None:
    """A suppressed cell lying on no cycle of the row/column graph, if any."""
    rows, cols = hidden.shape
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(rows + cols)]
    cells = list(zip(*np.nonzero(hidden)))
    for edge, (r, c) in enumerate(cells):
        adjacency[r].append((rows + c, edge))
        adjacency[rows + c].append((r, edge))
    order = [-1] * (rows + cols)
    low = [0] * (rows + cols)
    counter = 0
    for root in range(rows + cols):
        if order[root] != -1 or not adjacency[root]:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack = [(root, -1, iter(adjacency[root]))]
        while stack:
            node, via, neighbours = stack[-1]
            advanced = False
            for nxt, edge in neighbours:
                if edge == via:
                    continue
                if order[nxt] == -1:
                    order[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append((nxt, edge, iter(adjacency[nxt])))
                    advanced = True
                    break
                low[node] = min(low[node], order[nxt])
            if advanced:
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > order[parent]:
                    r, c = cells[via]
                    return int(r), int(c)
    return None


def _component(hidden: np.ndarray, start: int, without: tuple[int, int]) -> set[int]:
    """Vertices reachable from ``start`` (rows 0..R-1, columns R..) not using ``without``."""
    rows = hidden.shape[0]
    seen = {start}
    todo = [start]
    while todo:
        node = todo.pop()
        if node < rows:
            neighbours = [rows + c for c in np.nonzero(hidden[node])[0] if (node, c) != without]
        else:
            c = node - rows
            neighbours = [r for r in np.nonzero(hidden[:, c])[0] if (r, c) != without]
        for nxt in neighbours:
            if nxt not in seen:
                seen.add(int(nxt))
                todo.append(int(nxt))
    return seen


def _repair(hidden: np.ndarray, cost: np.ndarray, bridge: tuple[int, int]) -> tuple[int, int]:
    """The cheapest cell whose suppression brings ``bridge`` closer to lying on a cycle."""
    rows = hidden.shape[0]
    r, c = bridge
    side_r = _component(hidden, r, bridge)
    side_c = _component(hidden, rows + c, bridge)
    rows_c = [v for v in side_c if v < rows]
    cols_r = [v - rows for v in side_r if v >= rows]
    if rows_c and cols_r:
        # One new cell joining the two sides closes a cycle through the bridge.
        candidates = [(i, j) for i in rows_c for j in cols_r]
    elif not cols_r:
        # The row holds no other hidden cell: hide a second one in it.
        candidates = [(r, j) for j in range(hidden.shape[1]) if j != c]
    else:
        candidates = [(i, c) for i in range(rows) if i != r]
    candidates = [cell for cell in candidates if not hidden[cell]]
    return min(candidates, key=lambda cell: (cost[cell], cell))
