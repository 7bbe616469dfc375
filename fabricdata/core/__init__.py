"""The pure foundation: boxes and their one coordinate convention, typed errors, files, image headers and pixels,
the Florence-2 text codec, JSON lines, fingerprints. Imports nothing else of fabricdata and never imports FiftyOne."""
