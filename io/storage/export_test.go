package storage

// ResetClient exposes resetClient to the tests.
var ResetClient = resetClient
