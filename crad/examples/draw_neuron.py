"""Draw one neuron's graph after backward, as micrograd's demo does.

Writes neuron.dot (always) and neuron.svg when graphviz's ``dot`` is installed.
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
    print(f"{out}.dot written: {text.count('shape=record')} values, {text.count('shape=circle')} ops")
    try:
        print(f"{viz.render(y, out + '.svg')} written")
    except RuntimeError as e:
        print(e)
    return text


if __name__ == "__main__":
    main()
