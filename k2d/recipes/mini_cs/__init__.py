"""mini_cs: the built-in synthetic Mandarin-English code-switched lecture corpus."""
