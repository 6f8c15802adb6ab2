//go:build !cgo || multiad_nocgo || dicom_nocgo

package nifti

// haveLibdeflate tells whether inflateAll is built in.
const haveLibdeflate = false

// inflateAll is libdeflate's whole-buffer inflation, absent from this build
// (no cgo, or the tag multiad_nocgo): .nii.gz files stream through
// klauspost/compress.
func inflateAll(src []byte, need int64) ([]byte, error) { return nil, nil }
