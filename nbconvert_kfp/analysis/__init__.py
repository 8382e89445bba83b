"""What the code does: cells parsed once, scope analysis, artifact types, package pins."""
