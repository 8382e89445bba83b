"""Python source text for the generated script: literals, identifiers, reserved names, carried archives."""
