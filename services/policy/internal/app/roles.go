package app

import (
	"context"
	"slices"
	"strings"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
)

// RoleAddRequest is the body of nodex.v1.policy.role.add.
type RoleAddRequest struct {
	Name string     `json:"name"`
	Role authz.Role `json:"role"`
	// Replace allows overwriting an existing role of the same name.
	Replace bool `json:"replace,omitempty"`
}

// RoleAddReply is the reply of nodex.v1.policy.role.add.
type RoleAddReply struct {
	Name    string `json:"name"`
	Created bool   `json:"created"`
	// Revision is the role data's new bucket revision.
	Revision uint64 `json:"revision"`
}

// RoleBindRequest is the body of nodex.v1.policy.role.bind.
type RoleBindRequest struct {
	Identity string `json:"identity"`
	Role     string `json:"role"`
	// Unbind removes the binding instead of adding it.
	Unbind bool `json:"unbind,omitempty"`
}

// RoleBindReply is the reply of nodex.v1.policy.role.bind.
type RoleBindReply struct {
	Identity string `json:"identity"`
	// Roles are the identity's bound roles after the change.
	Roles    []string `json:"roles"`
	Revision uint64   `json:"revision"`
}

const keyReaderPrefix = "key-reader:"

// AddRole defines or, with Replace, redefines a role.
func (s *Service) AddRole(ctx context.Context, c Caller, req RoleAddRequest) (RoleAddReply, error) {
	if err := authz.ValidRoleName(req.Name); err != nil {
		return RoleAddReply{}, errs.InvalidRequest.Withf("%s", err.Error())
	}
	if err := s.authorize(ctx, c, "role_add", req.Name); err != nil {
		return RoleAddReply{}, err
	}

	created := false
	_, rev, err := s.updateRBAC(ctx, func(r *authz.RBAC) error {
		_, exists := r.Roles[req.Name]
		if exists && !req.Replace {
			return errs.Conflict.Withf("role %q exists; set replace to overwrite it", req.Name)
		}
		created = !exists
		r.Roles[req.Name] = req.Role

		return nil
	})
	if err != nil {
		return RoleAddReply{}, err
	}

	s.log.InfoContext(ctx, "role stored", "role", req.Name, "created", created,
		"identity", c.ID, "revision", rev)

	return RoleAddReply{Name: req.Name, Created: created, Revision: rev}, nil
}

// BindRole adds a role to an identity's bindings, or removes it. The role
// must be defined, or be a parametric key-reader:<provider> role.
func (s *Service) BindRole(ctx context.Context, c Caller,
	req RoleBindRequest) (RoleBindReply, error) {
	if err := authz.ValidRoleName(req.Role); err != nil {
		return RoleBindReply{}, errs.InvalidRequest.Withf("%s", err.Error())
	}
	if err := authz.ValidateSubjectID(req.Identity); err != nil {
		return RoleBindReply{}, errs.InvalidRequest.Withf("%s", err.Error())
	}
	if err := s.authorize(ctx, c, "role_bind", req.Identity); err != nil {
		return RoleBindReply{}, err
	}

	var roles []string
	r, rev, err := s.updateRBAC(ctx, func(r *authz.RBAC) error {
		_, defined := r.Roles[req.Role]
		if !defined && !req.Unbind && !strings.HasPrefix(req.Role, keyReaderPrefix) {
			return errs.NotFound.Withf("role %q is not defined; add it first", req.Role)
		}

		roles = slices.DeleteFunc(slices.Clone(r.Bindings[req.Identity]),
			func(x string) bool { return x == req.Role })
		if !req.Unbind {
			roles = append(roles, req.Role)
			slices.Sort(roles)
		}
		if len(roles) == 0 {
			delete(r.Bindings, req.Identity)
		} else {
			r.Bindings[req.Identity] = roles
		}

		return nil
	})
	if err != nil {
		return RoleBindReply{}, err
	}

	s.log.InfoContext(ctx, "role binding stored", "role", req.Role, "bound_identity",
		req.Identity, "unbind", req.Unbind, "identity", c.ID, "revision", rev)

	return RoleBindReply{Identity: req.Identity, Roles: nonNil(r.Bindings[req.Identity]),
		Revision: rev}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}

	return s
}
