"""microgpt's character GPT on names (scalar graphs); the code is crad/examples/gpt.py."""
from crad.examples.gpt import main

if __name__ == "__main__":
    main()
