// Capture module
