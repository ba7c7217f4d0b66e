package daemon

// NamespaceTable is namespaceTable, for the exiting-process test.
var NamespaceTable = namespaceTable
