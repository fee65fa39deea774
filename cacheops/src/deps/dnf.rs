//! WHERE clauses → disjunctive normal form. (Stub: being written.)
