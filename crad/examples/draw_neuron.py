"""Draw one neuron's graph after backward, as micrograd's demo does.

Writes NAME.svg (laid out by graphviz's ``dot`` when it is installed, by crad
itself otherwise) and NAME.dot, the same graph as DOT text.
"""
import sys

from crad import Neuron, Value, viz


def main(argv=None):
    out = (argv or sys.argv[1:] or ["neuron"])[0]
    n = Neuron(2, seed=0)
    x = [Value(1.0), Value(-2.0)]
    y = n(x)
    y.backward()
    text = viz.to_dot(y)
    with open(out + ".dot", "w") as f:
        f.write(text + "\n")
    drawing = viz.draw(y)
    drawing.save(out + ".svg")
    print(f"{out}.svg written ({drawing.shown} values, laid out by {drawing.layout}) and {out}.dot")
    return drawing


if __name__ == "__main__":
    main()
