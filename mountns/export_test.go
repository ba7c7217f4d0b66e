package mountns

// LegacyResolve switches the resolver to the path of pre-5.8 kernels.
var LegacyResolve = &legacyResolve
