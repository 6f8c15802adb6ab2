// Package tflitetest builds tiny TFLite flatbuffers for tests.
package tflitetest

import flatbuffers "github.com/google/flatbuffers/go"

// TinyModel builds a one-operator float TFLite model, out = op(in, in) with
// in and out of shape [1, 4, 4, 2], for the operator of the given builtin
// code.
func TinyModel(code int32) []byte {
	b := flatbuffers.NewBuilder(256)
	ints := func(v ...int32) flatbuffers.UOffsetT {
		b.StartVector(4, len(v), 4)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependInt32(v[i])
		}
		return b.EndVector(len(v))
	}
	tensor := func(name string) flatbuffers.UOffsetT {
		n := b.CreateString(name)
		shape := ints(1, 4, 4, 2)
		b.StartObject(5)
		b.PrependUOffsetTSlot(0, shape, 0)
		b.PrependInt8Slot(1, 0, 0) // FLOAT32
		b.PrependUint32Slot(2, 0, 0)
		b.PrependUOffsetTSlot(3, n, 0)
		return b.EndObject()
	}
	t0, t1 := tensor("in"), tensor("out")
	b.StartVector(4, 2, 4)
	b.PrependUOffsetT(t1)
	b.PrependUOffsetT(t0)
	tensors := b.EndVector(2)
	opIn, opOut := ints(0, 0), ints(1)
	b.StartObject(5)
	b.PrependUint32Slot(0, 0, 0)
	b.PrependUOffsetTSlot(1, opIn, 0)
	b.PrependUOffsetTSlot(2, opOut, 0)
	op := b.EndObject()
	b.StartVector(4, 1, 4)
	b.PrependUOffsetT(op)
	ops := b.EndVector(1)
	sgIn, sgOut := ints(0), ints(1)
	name := b.CreateString("main")
	b.StartObject(5)
	b.PrependUOffsetTSlot(0, tensors, 0)
	b.PrependUOffsetTSlot(1, sgIn, 0)
	b.PrependUOffsetTSlot(2, sgOut, 0)
	b.PrependUOffsetTSlot(3, ops, 0)
	b.PrependUOffsetTSlot(4, name, 0)
	sg := b.EndObject()
	b.StartVector(4, 1, 4)
	b.PrependUOffsetT(sg)
	sgs := b.EndVector(1)
	dep := int8(127)
	if code < 127 {
		dep = int8(code)
	}
	b.StartObject(4)
	b.PrependInt8Slot(0, dep, 0)
	b.PrependInt32Slot(2, 1, 1)
	b.PrependInt32Slot(3, code, 0)
	oc := b.EndObject()
	b.StartVector(4, 1, 4)
	b.PrependUOffsetT(oc)
	ocs := b.EndVector(1)
	b.StartObject(0)
	buf0 := b.EndObject()
	b.StartVector(4, 1, 4)
	b.PrependUOffsetT(buf0)
	bufs := b.EndVector(1)
	desc := b.CreateString("tiny")
	b.StartObject(5)
	b.PrependUint32Slot(0, 3, 0)
	b.PrependUOffsetTSlot(1, ocs, 0)
	b.PrependUOffsetTSlot(2, sgs, 0)
	b.PrependUOffsetTSlot(3, desc, 0)
	b.PrependUOffsetTSlot(4, bufs, 0)
	root := b.EndObject()
	b.FinishWithFileIdentifier(root, []byte("TFL3"))
	return b.FinishedBytes()
}
