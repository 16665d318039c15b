"""A layered (Sugiyama) layout of a DAG, left to right, in pure Python and numpy.

Used by ``crad.viz.draw`` so that graphs can be drawn without graphviz. The
steps are the classic ones, each a loop over an explicit order (no
recursion: graphs can be deep):

1. ranks: longest path to a sink, so every edge points rightwards and a node
   sits just left of its leftmost user (sinks, such as the root, are rank 0);
2. long edges are split by dummy nodes, one per rank they cross;
3. the order within each rank: barycenter sweeps, alternating directions;
4. vertical positions: each rank is pulled towards its neighbours' positions
   by a weighted isotonic regression (pool adjacent violators) that keeps the
   order and the minimum gaps; dummies weigh more, so long edges run straight.
"""
import numpy as np

COLUMN_GAP = 36.0  # horizontal space between ranks, px
ROW_GAP = 14.0  # vertical space between neighbours in a rank, px
SWEEPS = 6  # barycenter sweeps (each direction) and coordinate sweeps


def layered(width, height, edges):
    """Positions for n boxes and the polyline of every edge.

    width, height: float sequences (n,), the boxes' sizes in px.
    edges: (u, v) pairs, u drawn left of v; must form a DAG over range(n).
    Returns (x, y, paths, size): the boxes' centres as float64 arrays (n,),
    for each edge in the given order its list of (x, y) points from u's
    right side to v's left side (consecutive points share y inside a column
    and are joined by a curve in the gap between columns), and the (width,
    height) of the drawing.
    """
    n = len(width)
    if n == 0:
        raise ValueError("nothing to lay out: give at least one box")
    succ = [[] for _ in range(n)]
    for u, v in edges:
        succ[u].append(v)
    rank = _ranks(n, succ)

    # Every edge becomes a chain of unit edges through dummies (zero-size boxes).
    w, h, rk = [float(a) for a in width], [float(a) for a in height], list(rank)
    chains = []
    for u, v in edges:
        chain = [u]
        for r in range(rank[u] - 1, rank[v], -1):
            chain.append(len(rk))
            w.append(0.0)
            h.append(0.0)
            rk.append(r)
        chain.append(v)
        chains.append(chain)
    m = len(rk)
    left = [[] for _ in range(m)]  # neighbours one rank to the left (operands)
    right = [[] for _ in range(m)]  # neighbours one rank to the right (users)
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            right[a].append(b)
            left[b].append(a)

    nranks = max(rk) + 1
    layers = [[] for _ in range(nranks)]
    for i in _depth_first(right, left):  # initial order: each node's operands together
        layers[rk[i]].append(i)
    pos = [0.0] * m
    for layer in layers:
        _number(layer, pos)
    best, fewest = [list(layer) for layer in layers], _crossings(layers, right, pos)
    for _ in range(SWEEPS):
        for r in range(1, nranks):  # leftwards, each rank ordered by its users
            _reorder(layers[r], right, pos)
        for r in range(nranks - 2, -1, -1):  # rightwards, by operands
            _reorder(layers[r], left, pos)
        c = _crossings(layers, right, pos)
        if c < fewest:
            best, fewest = [list(layer) for layer in layers], c
    layers = best  # barycenter sweeps can oscillate: keep the best order seen
    for layer in layers:
        _number(layer, pos)

    y = [0.0] * m
    for layer in layers:
        for i, yi in zip(layer, _stack([h[i] for i in layer])):
            y[i] = yi
    for s in range(2 * SWEEPS):
        nbrs = right if s % 2 == 0 else left
        for r in (range(1, nranks) if s % 2 == 0 else range(nranks - 2, -1, -1)):
            layer = layers[r]
            want = [sum(y[j] for j in nbrs[i]) / len(nbrs[i]) if nbrs[i] else y[i] for i in layer]
            if len(layer) == 1:
                y[layer[0]] = want[0]
                continue
            wt = [(4.0 if i >= n else 1.0) * (len(nbrs[i]) or 0.25) for i in layer]
            for i, yi in zip(layer, _isotonic(want, wt, _gaps([h[i] for i in layer]))):
                y[i] = yi

    h, y, w = np.asarray(h), np.asarray(y), np.asarray(w)
    y -= np.min(y - h / 2)
    col = np.array([max(w[i] for i in layer) for layer in layers])
    xleft = np.zeros(nranks)  # rank nranks - 1 is leftmost
    for r in range(nranks - 2, -1, -1):
        xleft[r] = xleft[r + 1] + col[r + 1] + COLUMN_GAP
    x = xleft[rk] + col[rk] / 2
    xright = xleft + col
    paths = []
    for chain in chains:  # straight across each column, curved only in the gaps between columns
        u, v = chain[0], chain[-1]
        pts = [(x[u] + w[u] / 2, y[u])] + ([(xright[rk[u]], y[u])] if w[u] < col[rk[u]] else [])
        for d in chain[1:-1]:
            pts += [(xleft[rk[d]], y[d]), (xright[rk[d]], y[d])]
        pts += ([(xleft[rk[v]], y[v])] if w[v] < col[rk[v]] else []) + [(x[v] - w[v] / 2, y[v])]
        paths.append([(float(a), float(b)) for a, b in pts])
    return x[:n], y[:n], paths, (float(xleft[0] + col[0]), float(np.max(y + h / 2)))


def _ranks(n, succ):
    """Longest path to a sink for each node (sinks 0), by Kahn's algorithm
    from the sinks backwards; raises ValueError on a cycle."""
    users = np.array([len(s) for s in succ], np.int64)  # out-degree still unranked
    pred = [[] for _ in range(n)]
    for u in range(n):
        for v in succ[u]:
            pred[v].append(u)
    rank = [0] * n
    queue = [i for i in range(n) if users[i] == 0]
    for v in queue:  # the queue grows while it is read
        for u in pred[v]:
            rank[u] = max(rank[u], rank[v] + 1)
            users[u] -= 1
            if users[u] == 0:
                queue.append(u)
    if len(queue) != n:
        raise ValueError("the graph has a cycle; a layered layout needs a DAG")
    return rank


def _depth_first(right, left):
    """All nodes, depth first from each sink through operands (an explicit
    stack), so that a node's operands start out next to each other."""
    m = len(right)
    seen = [False] * m
    order = []
    for s in range(m):
        if right[s]:
            continue
        stack = [s]
        while stack:
            i = stack.pop()
            if seen[i]:
                continue
            seen[i] = True
            order.append(i)
            stack.extend(reversed(left[i]))  # first operand on top: visited first
    return order


def _crossings(layers, right, pos):
    """Edge crossings between every pair of adjacent ranks: inversions of the
    edges' right ends when sorted by their left ends (a Fenwick tree)."""
    total = 0
    for layer in layers[1:]:
        ends = sorted((pos[u], pos[v]) for u in layer for v in right[u])
        size = max((int(v) for _, v in ends), default=0) + 2
        tree = [0] * size
        for k, (_, v) in enumerate(ends):
            i = int(v) + 1  # earlier edges cross this one unless their right end is at or above v
            below = 0
            while i > 0:
                below += tree[i]
                i -= i & -i
            total += k - below
            i = int(v) + 1
            while i < size:
                tree[i] += 1
                i += i & -i
    return total


def _number(layer, pos):
    for k, i in enumerate(layer):
        pos[i] = float(k)


def _reorder(layer, nbrs, pos):
    """Sort layer (in place) by the mean position of each node's neighbours
    in the adjacent rank; a node without any keeps its place."""
    if len(layer) > 1:
        key = {i: (sum(pos[j] for j in nbrs[i]) / len(nbrs[i]) if nbrs[i] else pos[i], pos[i]) for i in layer}
        layer.sort(key=key.__getitem__)
        _number(layer, pos)


def _gaps(h):
    """Minimum distances between consecutive centres of boxes of heights h."""
    return [(a + b) / 2 + ROW_GAP for a, b in zip(h, h[1:])]


def _stack(h):
    """Centres of boxes of heights h stacked top to bottom, centred on 0."""
    c = _offsets(_gaps(h))
    return [ci - c[-1] / 2 for ci in c]


def _offsets(gaps):
    c = [0.0]
    for g in gaps:
        c.append(c[-1] + g)
    return c


def _isotonic(want, weight, gaps):
    """argmin sum weight * (y - want)^2 subject to y[k+1] - y[k] >= gaps[k].

    With z = y - cumsum(gaps) the constraint is z nondecreasing: weighted
    pool-adjacent-violators on an explicit stack of blocks.
    """
    c = _offsets(gaps)
    blocks = []  # [mean, weight, count], means increasing
    for zi, wi in zip((a - b for a, b in zip(want, c)), weight):
        mean, wsum, cnt = zi, wi, 1
        while blocks and blocks[-1][0] > mean:  # merge violating blocks
            pm, pw, pc = blocks.pop()
            mean = (pm * pw + mean * wsum) / (pw + wsum)
            wsum += pw
            cnt += pc
        blocks.append((mean, wsum, cnt))
    z = [mean for mean, _, cnt in blocks for _ in range(cnt)]
    return [a + b for a, b in zip(z, c)]
