// Placeholder translation unit until the Qt widgets land.
