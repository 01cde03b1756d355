"""Environment back-ends behind one small interface (embedded simulator, Gymnasium, RLBench)."""
