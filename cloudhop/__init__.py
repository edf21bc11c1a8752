"""cloudhop: one ML pipeline across several clouds."""
