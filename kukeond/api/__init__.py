"""Documents (v1beta1) and kukeonv1 Args/Reply types, Go-shaped JSON."""
