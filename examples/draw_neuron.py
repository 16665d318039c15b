"""Draw a neuron's graph after backward; the code is crad/examples/draw_neuron.py."""
from crad.examples.draw_neuron import main

if __name__ == "__main__":
    main()
