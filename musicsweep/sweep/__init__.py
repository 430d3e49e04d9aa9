"""From variants to launched jobs: `variants` and `prompts` describe, `plan` plans, `launch` launches."""
